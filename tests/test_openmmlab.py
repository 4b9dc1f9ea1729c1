"""The OpenMMLab backend: mmdet and mmseg models on the shared backbone, trained by our loop, scored by our metrics.

Tests that need the extra skip, naming `make openmmlab`, when it is not installed.
"""

import pytest
import torch

from domains import SyntheticDataset
from matrix.spec import SpecError, parse_study
from tasks import get_task, openmmlab
from tasks.model import build_model
from tasks.segmentation import MeanIoU
from tasks.data import InMemory, collate
from tasks.train import Evaluate, LossCurve, Schedule, evaluate, train
from tasks.transfer import save_checkpoint, transfer

needs_extra = pytest.mark.skipif(not openmmlab.available(), reason="the OpenMMLab extra is not installed: run `make openmmlab`")

BACKBONE = "test_resnet"
SIZE = 48
# (task, mm option, config, domain): close-up scenes hold one or two large objects, driving ones many
MODELS = [
    ("detection", "mm_detector", "retinanet_r50_fpn_1x_coco", "close-up"),
    ("detection", "mm_detector", "fcos_r50-caffe_fpn_gn-head_1x_coco", "close-up"),
    ("detection", "mm_detector", "faster-rcnn_r50_fpn_1x_coco", "driving"),
    ("segmentation", "mm_segmentor", "fcn_r50-d8_4xb2-40k_cityscapes-512x1024", "driving"),
    ("segmentation", "mm_segmentor", "segformer_mit-b0_8xb2-160k_ade20k-512x512", "driving"),
]


def _options(option, config):
    return {"backend": "openmmlab", option: config}


def _data(domain, split="train", n=8, size=SIZE):
    ds = SyntheticDataset("t", domain, split, n, size)
    return ds.info, InMemory.of(ds)


def _study(model):
    return {"name": "s", "tasks": ["segmentation", "detection"], "datasets": [{"name": "a", "domain": "driving"}],
            "model": model}  # fmt: skip


def test_without_the_extra_the_spec_and_the_tasks_say_to_run_make_openmmlab(monkeypatch):
    monkeypatch.setattr(openmmlab, "available", lambda: False)
    with pytest.raises(SpecError) as err:
        parse_study(_study({"backend": "openmmlab"}), "s.yaml")
    message = str(err.value)
    assert message.startswith("s.yaml: model.backend: ") and "run `make openmmlab`" in message and "\n" not in message
    with pytest.raises(openmmlab.ExtraMissingError, match="make openmmlab"):
        get_task("detection", {"backend": "openmmlab"})
    assert get_task("segmentation", {"backend": "native"}).mm is None  # the native backend needs nothing


@needs_extra
def test_spec_takes_mm_configs_by_name_and_rejects_unknown_ones():
    study = parse_study(_study({"backend": "openmmlab", "mm_segmentor": MODELS[4][2]}), "s.yaml")
    options = study.model.model_dump()  # what a job hands its task
    assert get_task("segmentation", options).mm.config == MODELS[4][2]
    assert get_task("detection", options).mm.config == openmmlab.DEFAULT_DETECTOR
    for field, typo, close in [("mm_detector", "retinanet_r50_fpn_1x_cocoo", "retinanet_r50_fpn_1x_coco"),
                               ("mm_segmentor", "segformer_mit-b0_8xb2-160k_ade20k-512", "segformer_mit-b0")]:  # fmt: skip
        with pytest.raises(SpecError) as err:
            parse_study(_study({"backend": "openmmlab", field: typo}), "s.yaml")
        message = str(err.value)
        assert message.startswith(f"s.yaml: model.{field}: unknown ") and close in message and "\n" not in message
    with pytest.raises(SpecError, match=r"model\.backend: got 'mm'"):
        parse_study(_study({"backend": "mm"}), "s.yaml")


@needs_extra
def test_shared_backbone_is_found_by_mmdet_and_mmseg_registries():
    from mmdet.registry import MODELS as MMDET
    from mmengine.registry import MODELS as ROOT
    from mmseg.registry import MODELS as MMSEG

    from tasks.openmmlab.backbone import SHARED_BACKBONE, SharedBackbone

    assert ROOT.get(SHARED_BACKBONE) is SharedBackbone
    assert MMDET.get(SHARED_BACKBONE) is SharedBackbone and MMSEG.get(SHARED_BACKBONE) is SharedBackbone
    with pytest.raises(RuntimeError, match="no backbone bound"):
        SharedBackbone([0])(torch.zeros(1, 3, 32, 32))


@needs_extra
@pytest.mark.parametrize(("task_name", "option", "config", "domain"), MODELS, ids=[m[2].split("_")[0] for m in MODELS])
def test_mm_model_on_the_shared_backbone_trains_and_is_scored_by_our_metric(task_name, option, config, domain):
    from tasks.openmmlab.backbone import SharedBackbone

    info, data = _data(domain)
    options = _options(option, config)
    task = get_task(task_name, options)
    model = build_model(BACKBONE, task_name, info, seed=0, options=options)
    native = build_model(BACKBONE, task_name, info, seed=0)

    # the backbone is the task model's, with the native model's keys; the mm model holds none of it
    mm = model.head.model
    assert isinstance(mm.backbone, SharedBackbone) and not list(mm.backbone.parameters())
    keys = [k for k in model.state_dict() if k.startswith("backbone.")]
    assert keys == [k for k in native.state_dict() if k.startswith("backbone.")]
    assert not [k for k in model.state_dict() if "backbone" in k and not k.startswith("backbone.")]

    # sized from the backbone's feature_info and the dataset's label space
    fi = model.backbone.feature_info
    read = [fi.channels()[i] for i in mm.backbone.indices]
    assert all(fi.reduction()[i] >= 4 for i in mm.backbone.indices)
    if task_name == "detection":
        assert list(mm.neck.in_channels) == read
        head = mm.roi_head.bbox_head if hasattr(mm, "roi_head") else mm.bbox_head
        assert head.num_classes == len(info.things)
    else:
        heads = [mm.decode_head] + ([mm.auxiliary_head] if getattr(mm, "auxiliary_head", None) is not None else [])
        for h in heads:
            index = h.in_index
            assert h.in_channels == ([read[i] for i in index] if isinstance(index, list) else read[index])
            assert h.num_classes == len(info.classes) and h.ignore_index == 255

    # trained by our loop: the backbone module runs inside the mm model and receives gradients
    calls = []
    hook = model.backbone.register_forward_hook(lambda *_: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve, evaluation = LossCurve(every=1), Evaluate(task, data, lambda: task.metric(info))
    train(model, task, data, Schedule(steps=2, batch_size=4, lr=1e-3), seed=0, hooks=(curve, evaluation))
    hook.remove()
    assert len(calls) >= 2 and all(torch.isfinite(torch.tensor(loss)) for _, loss in curve.points)
    after = model.state_dict()
    for part in ("backbone.", f"head.model.{'neck' if task_name == 'detection' else 'decode_head'}."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part)), f"{part} did not train"
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("neck."))  # ours: unused by mm

    # evaluated by our metrics, in our label space
    metrics = evaluation.final
    assert task.primary_metric in metrics and all(isinstance(v, float) for v in metrics.values())
    model.eval()
    with torch.no_grad():
        predictions = task.predict(model, collate(data.samples[:2]))
    if task_name == "detection":
        assert -1.0 <= metrics["ap"] <= 1.0 and len(predictions) == 2
        for p in predictions:
            assert set(p) == {"boxes", "labels", "scores"} and p["boxes"].shape[1:] == (4,)
            assert ((p["labels"] >= 0) & (p["labels"] < len(info.things))).all()
            assert ((p["boxes"] >= 0) & (p["boxes"] <= SIZE)).all()
    else:
        assert 0.0 <= metrics["miou"] <= 1.0
        assert predictions.shape == (2, len(info.classes), SIZE, SIZE)
        metric = MeanIoU(len(info.classes))
        metric.update(predictions, collate(data.samples[:2]))
        assert metric.compute()["pixel_acc"] > 0


@needs_extra
def test_native_source_backbone_moves_into_mm_targets_and_heads_never_cross_backends(tmp_path):
    info, data = _data("close-up", n=4)
    source_task = get_task("segmentation")
    source = build_model(BACKBONE, "segmentation", info, seed=0)
    train(source, source_task, data, Schedule(steps=1, batch_size=4), seed=0)
    path = save_checkpoint(source, tmp_path / "source.pt",
                           {"task": "segmentation", "label_space": list(source_task.label_space(info))})  # fmt: skip
    wanted = {k: v for k, v in source.state_dict().items() if k.startswith("backbone.")}

    for task_name, option, config, _ in (MODELS[0], MODELS[4]):
        options = _options(option, config)
        task = get_task(task_name, options)
        target = build_model(BACKBONE, task_name, info, seed=1, options=options)
        assert any(not torch.equal(target.state_dict()[k], v) for k, v in wanted.items())  # different before
        report = transfer(target, path, head=True, task=task_name, label_space=task.label_space(info))
        assert sorted(k for k in report.moved if k.startswith("backbone.")) == sorted(wanted)
        assert not [k for k in report.moved if k.startswith("head.")]
        state = target.state_dict()
        assert all(torch.equal(state[k], v) for k, v in wanted.items())
        loss = task.loss(target.train(), collate(data.samples))  # the mm model runs on the moved backbone
        assert torch.isfinite(loss)

    # the label space names backend and config: a native head never lands in an mm model of the same task
    native_label_space, mm_task = source_task.label_space(info), get_task("segmentation", _options(*MODELS[4][1:3]))
    assert mm_task.label_space(info) != native_label_space
    assert "backend=openmmlab" in mm_task.label_space(info) and f"mm_segmentor={MODELS[4][2]}" in mm_task.label_space(info)
    target = build_model(BACKBONE, "segmentation", info, seed=1, options=_options(*MODELS[4][1:3]))
    report = transfer(target, path, head=True, task="segmentation", label_space=mm_task.label_space(info))
    assert any("task or label space differ" in s for s in report.skipped if s.startswith("head."))

    # build_model's own init from a checkpoint of ours works for an mm model too
    initialised = build_model(BACKBONE, "detection", info, seed=1, init=str(path), options=_options(*MODELS[0][1:3]))
    assert all(torch.equal(initialised.state_dict()[k], v) for k, v in wanted.items())


@needs_extra
def test_mm_head_moves_between_models_of_the_same_config_when_asked(tmp_path):
    info, _ = _data("driving", n=2)
    options = _options(*MODELS[4][1:3])
    task = get_task("segmentation", options)
    source = build_model(BACKBONE, "segmentation", info, seed=0, options=options)
    again = build_model(BACKBONE, "segmentation", info, seed=0, options=options)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in source.state_dict().items())  # same seed, same init
    path = save_checkpoint(source, tmp_path / "mm.pt", {"task": "segmentation", "label_space": list(task.label_space(info))})
    target = build_model(BACKBONE, "segmentation", info, seed=1, options=options)
    report = transfer(target, path, head=True, task="segmentation", label_space=task.label_space(info))
    heads = [k for k in source.state_dict() if k.startswith("head.")]
    assert heads and set(heads) <= set(report.moved)


@needs_extra
def test_mm_segformer_head_learns_on_a_procedural_domain():
    info, tr = _data("driving", n=32)
    _, va = _data("driving", split="val", n=8)
    options = _options(*MODELS[4][1:3])
    task = get_task("segmentation", options)
    model = build_model(BACKBONE, "segmentation", info, seed=0, options=options)
    before = evaluate(model, task, va, task.metric(info))["miou"]
    train(model, task, tr, Schedule(steps=30, batch_size=8, lr=2e-3), seed=0)
    after = evaluate(model, task, va, task.metric(info))["miou"]
    assert after > max(before, 0) + 0.1, (before, after)
