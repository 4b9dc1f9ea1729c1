import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

from domains import DatasetInfo, KeypointSchema, SyntheticDataset
from domains.config import TASK_TYPES
from tasks import TASKS, get_task
from tasks.backbone import WeightsNotFoundError, create_backbone
from tasks.base import EmptySplitError
from tasks.coco import CocoAP
from tasks.depth import SI_LAMBDA, DepthErrors
from tasks.detection import DETECTORS
from tasks.model import build_model
from tasks.segmentation import MeanIoU
from tasks.data import InMemory, collate
from tasks.train import Evaluate, NonFiniteLossError, Schedule, evaluate, train
from tasks.transfer import load_checkpoint, save_checkpoint, transfer

BACKBONE = "test_resnet"
# every task type, and every detector the study may choose
VARIANTS = [(t, {}) for t in TASKS.names() if t != "detection"] + [("detection", {"detector": d}) for d in DETECTORS]


def _data(domain="driving", split="train", n=8, size=48, name="t"):
    ds = SyntheticDataset(name, domain, split, n, size)
    return ds.info, InMemory.of(ds)


@pytest.mark.parametrize(("task_name", "options"), VARIANTS, ids=[f"{t}-{o.get('detector', '')}" for t, o in VARIANTS])
def test_every_task_runs_forward_and_backward(task_name, options):
    info, data = _data(n=4)
    task = get_task(task_name, options)
    model = build_model(BACKBONE, task_name, info, seed=0, options=options)
    model.train()
    loss = task.loss(model, collate(data.samples))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for part in (model.backbone, model.neck, model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert {k.split(".")[0] for k in model.state_dict()} == {"backbone", "neck", "head"}
    metrics = evaluate(model, task, data, task.metric(info))
    assert task.primary_metric in metrics and all(isinstance(v, float) for v in metrics.values())


# task -> (domain, steps, batch, evaluated on): short runs on 48 px scenes, each clearly better than untrained.
# Detection and keypoints learn on close-up scenes (one or two large objects); keypoints are scored on the
# training scenes (a short run from scratch fits them, it does not yet generalise).
LEARN = {"segmentation": ("driving", 60, 16, "val"), "depth": ("driving", 60, 16, "val"),
         "detection": ("close-up", 60, 8, "val"), "keypoints": ("close-up", 60, 8, "train")}  # fmt: skip


@pytest.mark.parametrize("task_name", TASKS.names())
def test_every_task_learns_on_a_procedural_domain(task_name):
    domain, steps, batch, scored_on = LEARN[task_name]
    info, tr = _data(domain, n=32 if domain == "close-up" else 64)
    va = tr if scored_on == "train" else _data(domain, split="val", n=16)[1]
    task = get_task(task_name)
    model = build_model(BACKBONE, task_name, info, seed=0)
    before = evaluate(model, task, va, task.metric(info))[task.primary_metric]
    train(model, task, tr, Schedule(steps=steps, batch_size=batch, lr=2e-3), seed=0)
    after = evaluate(model, task, va, task.metric(info))[task.primary_metric]
    if task.higher_is_better:
        assert after > max(before, 0) + 0.1, (before, after)
    else:
        assert after < before * 0.7, (before, after)


@pytest.mark.parametrize(("task_name", "options"), [("segmentation", {}), ("detection", {}),
                                                    ("detection", {"detector": "faster_rcnn"})],
                         ids=["segmentation", "detection-fcos", "detection-faster_rcnn"])  # fmt: skip
def test_same_seed_gives_same_weights_whatever_ran_before(task_name, options):
    """Two trainings with one seed end with equal weights and metrics, whatever torch's global generator held
    before (Faster R-CNN's box sampler draws from it), and leave that generator as it was; another seed
    trains other weights, and training moved them, so the equality is not that of untouched models."""
    from domains.transforms import augment

    info, tr = _data(n=8)
    task = get_task(task_name, options)
    flips = info.keypoints.flip_pairs if info.keypoints else ()

    def run(seed: int, global_seed: int):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        model = build_model(BACKBONE, task_name, info, seed=seed, options=options)
        untrained = {k: v.clone() for k, v in model.state_dict().items()}
        hook = Evaluate(task, tr, lambda: task.metric(info))
        aug = lambda s, g: augment(s, g, size=48, flip_pairs=flips)  # noqa: E731
        train(model, task, tr, Schedule(steps=4, batch_size=4), seed=seed, hooks=(hook,), augment=aug)
        assert torch.equal(torch.get_rng_state(), before), "the global generator was left changed"
        return untrained, model.state_dict(), hook.final

    untrained, first, metrics = run(5, global_seed=1)
    _, second, again = run(5, global_seed=2)
    _, other, _ = run(6, global_seed=1)
    assert first.keys() == second.keys() == other.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    assert metrics == again and task.primary_metric in metrics
    trained = [k for k in first if first[k].is_floating_point()]
    assert any(not torch.equal(first[k], untrained[k]) for k in trained)
    assert any(not torch.equal(first[k], other[k]) for k in trained)


def test_the_task_registry_has_every_task_type_a_config_may_name():
    assert TASKS.names() == list(TASK_TYPES)  # domains.config checks study and catalog files without importing tasks


def test_the_timm_names_listing_is_the_installed_timms():
    import timm

    from tasks import _timm_names
    from tasks.backbone_names import check_backbone, timm_names

    assert _timm_names.VERSION == timm.__version__, "timm changed: run `python -m tasks.backbone_names`"
    assert timm_names() == frozenset(timm.list_models())
    assert check_backbone("test_resnet") == "test_resnet"
    with pytest.raises(ValueError, match="unknown backbone 'resnt18': not a timm model name; close ones: resnet18"):
        check_backbone("resnt18")


def test_miou_matches_torchmetrics_when_every_class_occurs():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 16, 16), generator=gen)
    target[0, :2] = 255  # ignored pixels
    logits = torch.randn(3, 4, 16, 16, generator=gen)
    ours = MeanIoU(4)
    ours.update(logits, {"segmentation": target})
    ref = MulticlassJaccardIndex(num_classes=4, ignore_index=255, average="macro")
    assert ours.compute()["miou"] == pytest.approx(float(ref(logits.argmax(1), target)), abs=1e-6)


def test_miou_averages_only_classes_present():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 0, 1, 0]]])
    logits = torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float()
    m = MeanIoU(5)
    m.update(logits, {"segmentation": target})
    # class 0: tp 2, union 3; class 1: tp 1, union 2; classes 2-4 absent
    assert m.compute()["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-9)


def test_depth_errors_match_direct_computation():
    gen = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 8, 8, generator=gen) * 10
    gt[0, 0] = 0  # invalid
    log_pred = torch.randn(2, 1, 8, 8, generator=gen)
    m = DepthErrors()
    m.update(log_pred[:1], {"depth": gt[:1]})
    m.update(log_pred[1:], {"depth": gt[1:]})
    p, g = log_pred[:, 0].exp().double().numpy(), gt.double().numpy()
    v = g > 0
    p, g = p[v], g[v]
    res = m.compute()
    assert res["abs_rel"] == pytest.approx(np.mean(np.abs(p - g) / g), abs=1e-6)
    assert res["rmse"] == pytest.approx(np.sqrt(np.mean((p - g) ** 2)), abs=1e-6)
    assert res["delta1"] == pytest.approx(np.mean(np.maximum(p / g, g / p) < 1.25), abs=1e-6)


def test_scale_invariant_depth_loss():
    gen = torch.Generator().manual_seed(2)
    gt = torch.rand(2, 8, 8, generator=gen) * 10 + 0.5
    gt[0, 0] = 0
    out = torch.randn(2, 1, 8, 8, generator=gen)
    d = (out[:, 0] - gt.clamp_min(1e-9).log())[gt > 0].double()
    expected = float(torch.sqrt((d**2).mean() - SI_LAMBDA * d.mean() ** 2))
    si = get_task("depth", {"depth_loss": "scale_invariant"})
    assert float(si.criterion(out, {"depth": gt})) == pytest.approx(expected, rel=1e-5)
    # a global scale error costs less under the scale-invariant loss than under L1 on log-depth
    shifted = torch.log(gt.clamp_min(1e-9)).unsqueeze(1) + 1.0
    l1 = get_task("depth", {"depth_loss": "log_l1"})
    assert float(si.criterion(shifted, {"depth": gt})) < 0.5 * float(l1.criterion(shifted, {"depth": gt}))
    with pytest.raises(ValueError, match="expected one of: log_l1, scale_invariant"):
        get_task("depth", {"depth_loss": "l2"})


def _boxes(gen, n, size=64.0):
    xy = torch.rand(n, 2, generator=gen) * size * 0.7
    wh = torch.rand(n, 2, generator=gen) * size * 0.25 + 8
    return torch.cat([xy, xy + wh], 1)


def _detection_case(seed=0, images=6, classes=3):
    """Ground truth and noisy predictions (some missed, some false) over several images."""
    gen = torch.Generator().manual_seed(seed)
    gts, preds = [], []
    for _ in range(images):
        n = int(torch.randint(0, 6, (1,), generator=gen))
        boxes, labels = _boxes(gen, n), torch.randint(0, classes, (n,), generator=gen)
        keep = torch.rand(n, generator=gen) > 0.2
        p_boxes = boxes[keep] + torch.randn(int(keep.sum()), 4, generator=gen)
        p_boxes = torch.cat([p_boxes, _boxes(gen, 2)])
        p_labels = torch.cat([labels[keep], torch.randint(0, classes, (2,), generator=gen)])
        gts.append({"boxes": boxes, "labels": labels})
        preds.append({"boxes": p_boxes, "labels": p_labels, "scores": torch.rand(len(p_labels), generator=gen)})
    return gts, preds


def test_box_ap_matches_torchmetrics_pycocotools_backend():
    gts, preds = _detection_case()
    ours = CocoAP("bbox", ("a", "b", "c"))
    for i in range(0, len(gts), 2):  # in batches of two images
        batch = {"image": torch.zeros(2, 3, 64, 64), "boxes": [g["boxes"] for g in gts[i : i + 2]],
                 "labels": [g["labels"] for g in gts[i : i + 2]]}  # fmt: skip
        ours.update(preds[i : i + 2], batch)
    # COCO's thresholds in float64, as pycocotools has them (torchmetrics' defaults are float32)
    ref = MeanAveragePrecision(iou_type="bbox", backend="pycocotools", iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
                               rec_thresholds=np.linspace(0.0, 1.0, 101).tolist())  # fmt: skip
    ref.update(preds, gts)
    expected = ref.compute()
    got = ours.compute()
    assert expected["map"] > 0.1  # a case where AP is informative
    for mine, theirs in [("ap", "map"), ("ap50", "map_50"), ("ap75", "map_75"), ("ap_small", "map_small")]:
        assert got[mine] == pytest.approx(float(expected[theirs]), abs=1e-6), mine


def test_keypoint_ap_matches_a_direct_pycocotools_call():
    sigmas = (0.026, 0.079, 0.079, 0.107)
    gen = torch.Generator().manual_seed(3)
    images, gts, preds = 4, [], []
    for _ in range(images):
        boxes = _boxes(gen, 3)
        kps = torch.cat([boxes[:, None, :2] + torch.rand(3, 4, 2, generator=gen) * (boxes[:, None, 2:] - boxes[:, None, :2]),
                         torch.randint(0, 3, (3, 4, 1), generator=gen).float()], -1)  # fmt: skip
        noisy = kps.clone()
        noisy[..., :2] += torch.randn(3, 4, 2, generator=gen) * 1.5
        gts.append({"boxes": boxes, "labels": torch.zeros(3, dtype=torch.long), "keypoints": kps})
        preds.append({"boxes": boxes, "labels": torch.zeros(3, dtype=torch.long), "scores": torch.rand(3, generator=gen),
                      "keypoints": noisy})  # fmt: skip
    ours = CocoAP("keypoints", ("thing",), sigmas, ("a", "b", "c", "d"))
    for g, p in zip(gts, preds, strict=True):
        ours.update([p], {"image": torch.zeros(1, 3, 64, 64), **{k: [v] for k, v in g.items()}})
    # the same case written directly in COCO's own terms
    dataset = {"images": [{"id": i + 1, "width": 64, "height": 64} for i in range(images)],
               "categories": [{"id": 1, "name": "thing", "keypoints": ["a", "b", "c", "d"]}], "annotations": []}  # fmt: skip
    results = []
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for b, k in zip(g["boxes"].tolist(), g["keypoints"], strict=True):
            dataset["annotations"].append({
                "id": len(dataset["annotations"]) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                "keypoints": k.flatten().tolist(), "num_keypoints": int((k[:, 2] > 0).sum()),
            })  # fmt: skip
        for b, k, s in zip(p["boxes"].tolist(), p["keypoints"], p["scores"].tolist(), strict=True):
            results.append({"image_id": i + 1, "category_id": 1, "score": s, "keypoints": k.flatten().tolist(),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    got = ours.compute()
    assert 0.05 < ev.stats[0] < 0.95
    assert got["ap"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert got["ap50"] == pytest.approx(ev.stats[1], abs=1e-6)


def test_ap_without_objects_or_predictions():
    empty = {"image": torch.zeros(1, 3, 32, 32), "boxes": [torch.zeros(0, 4)], "labels": [torch.zeros(0, dtype=torch.long)]}
    none = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}]
    m = CocoAP("bbox", ("a",))
    m.update(none, empty)
    with pytest.raises(EmptySplitError, match="no ground-truth object of a: AP is undefined"):
        m.compute()
    m = CocoAP("bbox", ("a",))
    m.update(none, dict(empty, boxes=[torch.tensor([[1.0, 1, 9, 9]])], labels=[torch.tensor([0])]))
    assert m.compute()["ap"] == 0.0


def test_non_finite_loss_raises_typed_error():
    info, tr = _data(n=8)
    model = build_model(BACKBONE, "depth", info, seed=0)
    tr = InMemory([dict(s, image=s["image"] * float("nan")) for s in tr.samples], info)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(model, get_task("depth"), tr, Schedule(steps=3, batch_size=4), seed=0)


SEG_INFO = DatasetInfo("a", "driving", ("segmentation",), ("x", "y", "z"), 32, things=("x",))


def _parts(sd, part):
    return sorted(k for k in sd if k.startswith(part + "."))


def test_transfer_moves_backbone_and_neck_across_task_types(tmp_path):
    src = build_model(BACKBONE, "segmentation", SEG_INFO, seed=1)
    meta = {"task": "segmentation", "label_space": list(SEG_INFO.classes)}
    path = save_checkpoint(src, tmp_path / "ck" / "src.pt", meta)
    assert [p.name for p in path.parent.iterdir()] == ["src.pt"]  # no temporary file left
    assert load_checkpoint(path)["meta"] == meta
    for task in ("depth", "detection"):
        dst = build_model(BACKBONE, task, SEG_INFO, seed=2)
        report = transfer(dst, path, head=True, task=task, label_space=get_task(task).label_space(SEG_INFO))
        src_sd, dst_sd = src.state_dict(), dst.state_dict()
        assert sorted(report.moved) == _parts(src_sd, "backbone") + _parts(src_sd, "neck")
        assert all(torch.equal(src_sd[k], dst_sd[k]) for k in report.moved)
        assert report.skipped and all(s.startswith("head.") and "differ" in s for s in report.skipped)


def test_head_moves_only_when_asked_and_label_spaces_match(tmp_path):
    src = build_model(BACKBONE, "segmentation", SEG_INFO, seed=1)
    path = save_checkpoint(src, tmp_path / "src.pt", {"task": "segmentation", "label_space": list(SEG_INFO.classes)})
    heads = _parts(src.state_dict(), "head")
    same = build_model(BACKBONE, "segmentation", SEG_INFO, seed=2)
    report = transfer(same, path, head=False, task="segmentation", label_space=SEG_INFO.classes)
    assert not set(heads) & set(report.moved) and all("does not ask" in s for s in report.skipped)
    report = transfer(same, path, head=True, task="segmentation", label_space=SEG_INFO.classes)
    assert set(heads) <= set(report.moved) and not report.skipped
    assert torch.equal(same.state_dict()["head.predict.weight"], src.state_dict()["head.predict.weight"])
    other = DatasetInfo("b", "driving", ("segmentation",), ("x", "y", "w"), 32)  # same size, other classes
    dst = build_model(BACKBONE, "segmentation", other, seed=2)
    report = transfer(dst, path, head=True, task="segmentation", label_space=other.classes)
    assert not set(heads) & set(report.moved)


def test_init_from_a_checkpoint_of_ours(tmp_path):
    src = build_model(BACKBONE, "depth", SEG_INFO, seed=1)
    path = save_checkpoint(src, tmp_path / "src.pt", {"task": "depth", "label_space": ["depth"]})
    model = build_model(BACKBONE, "segmentation", SEG_INFO, seed=2, init=str(path))
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="nor a checkpoint file"):
        build_model(BACKBONE, "segmentation", SEG_INFO, seed=2, init=str(tmp_path / "missing.pt"))
    other = save_checkpoint(build_model("resnet18", "depth", SEG_INFO, seed=1), tmp_path / "r18.pt", {})
    with pytest.raises(ValueError, match="not a 'test_resnet' backbone"):
        build_model(BACKBONE, "segmentation", SEG_INFO, seed=2, init=str(other))


@pytest.mark.parametrize("name", ["resnet18", "hrnet_w18_small"])
def test_backbones_by_timm_name(name):
    info, data = _data(n=2, size=64)
    model = build_model(name, "segmentation", info, seed=0)
    out = model(collate(data.samples)["image"])
    assert out.shape == (2, len(info.classes), 64, 64) and torch.isfinite(out).all()


def test_imagenet_init_without_local_weights_says_where_to_place_them():
    with pytest.raises(WeightsNotFoundError, match="hub/checkpoints/test_resnet.safetensors"):
        create_backbone(BACKBONE, init="imagenet")


def test_store_sweeps_only_leftovers_of_dead_writers(tmp_path):
    import os
    import socket
    import subprocess

    from matrix.store import Storage

    store = Storage(tmp_path)
    (tmp_path / "checkpoints" / "ab").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    left = tmp_path / "checkpoints" / "ab" / f".abcd.pt.{host}.{dead.pid}.x1y2.tmp"
    live = tmp_path / "checkpoints" / "ab" / f".abce.pt.{host}.{os.getpid()}.x1y2.tmp"
    other_host = tmp_path / "checkpoints" / "ab" / f".abcf.pt.elsewhere.{dead.pid}.x1y2.tmp"
    for f in (left, live, other_host):
        f.write_bytes(b"partial")
    assert store.sweep() == 1
    assert not left.exists() and live.exists() and other_host.exists()
