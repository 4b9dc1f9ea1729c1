import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from domains import DatasetInfo, SyntheticDataset
from tasks import TASKS, get_task
from tasks.backbone import WeightsNotFoundError, create_backbone
from tasks.depth import DepthErrors
from tasks.model import build_model
from tasks.segmentation import MeanIoU
from tasks.train import NonFiniteLossError, Schedule, evaluate, materialize, train
from tasks.transfer import load_checkpoint, save_checkpoint, transfer

BACKBONE = "test_resnet"


def _data(domain="driving", split="train", n=8, size=32, name="t"):
    ds = SyntheticDataset(name, domain, split, n, size)
    return ds.info, materialize(ds)


@pytest.mark.parametrize("task_name", TASKS.names())
def test_every_task_runs_forward_and_backward(task_name):
    info, data = _data(n=4)
    task = get_task(task_name)
    model = build_model(BACKBONE, task_name, info, seed=0)
    out = model(data["image"])
    assert out.shape[0] == 4 and out.shape[-2:] == (32, 32)
    loss = task.loss(out, data)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())
    metrics = task.metric(info)
    metrics.update(out.detach(), data)
    result = metrics.compute()
    assert task.primary_metric in result and all(isinstance(v, float) for v in result.values())


@pytest.mark.parametrize("task_name", TASKS.names())
def test_every_task_learns_on_a_procedural_domain(task_name):
    """A short run clearly beats the untrained model on held-out scenes."""
    info, tr = _data(n=64)
    _, va = _data(split="val", n=32)
    task = get_task(task_name)
    model = build_model(BACKBONE, task_name, info, seed=0)
    before = evaluate(model, task, va, task.metric(info))[task.primary_metric]
    train(model, task, tr, Schedule(steps=60, batch_size=16, lr=2e-3), seed=0)
    after = evaluate(model, task, va, task.metric(info))[task.primary_metric]
    if task.higher_is_better:
        assert after > before + 0.1, (before, after)
    else:
        assert after < before * 0.7, (before, after)


def test_same_seed_gives_same_metrics():
    info, tr = _data(n=16)
    task = get_task("segmentation")
    results = []
    for _ in range(2):
        model = build_model(BACKBONE, "segmentation", info, seed=5)
        train(model, task, tr, Schedule(steps=6, batch_size=4), seed=5)
        results.append(evaluate(model, task, tr, task.metric(info)))
    assert results[0] == results[1]


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


def test_non_finite_loss_raises_typed_error():
    info, tr = _data(n=8)
    model = build_model(BACKBONE, "depth", info, seed=0)
    tr = dict(tr, image=tr["image"] * float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(model, get_task("depth"), tr, Schedule(steps=3, batch_size=4), seed=0)


def test_transfer_moves_backbone_not_head(tmp_path):
    seg_info = DatasetInfo("a", "driving", ("segmentation",), ("x", "y", "z"), 32)
    src = build_model(BACKBONE, "segmentation", seg_info, seed=1)
    path = save_checkpoint(src, tmp_path / "ck" / "src.pt", {"task": "segmentation"})
    assert [p.name for p in path.parent.iterdir()] == ["src.pt"]  # no temporary file left
    assert load_checkpoint(path)["meta"] == {"task": "segmentation"}
    dst = build_model(BACKBONE, "depth", seg_info, seed=2)
    report = transfer(dst, path)
    src_sd, dst_sd = src.state_dict(), dst.state_dict()
    backbone = [k for k in src_sd if k.startswith("backbone.")]
    assert sorted(report.moved) == sorted(backbone)
    assert all(torch.equal(src_sd[k], dst_sd[k]) for k in backbone)
    assert report.skipped and all(s.startswith("head.") for s in report.skipped)
    assert not torch.equal(src_sd["head.predict.weight"][:1], dst_sd["head.predict.weight"])


def test_imagenet_init_without_local_weights_says_where_to_place_them():
    with pytest.raises(WeightsNotFoundError, match="hub/checkpoints/test_resnet.safetensors"):
        create_backbone(BACKBONE, init="imagenet")


def test_store_sweeps_only_leftovers_of_dead_writers(tmp_path):
    import os
    import socket
    import subprocess

    from matrix.jobs import CheckpointStore

    store = CheckpointStore(tmp_path)
    (tmp_path / "ab").mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    left = tmp_path / "ab" / f".abcd.pt.{host}.{dead.pid}.x1y2.tmp"
    live = tmp_path / "ab" / f".abce.pt.{host}.{os.getpid()}.x1y2.tmp"
    other_host = tmp_path / "ab" / f".abcf.pt.elsewhere.{dead.pid}.x1y2.tmp"
    for f in (left, live, other_host):
        f.write_bytes(b"partial")
    assert store.sweep() == 1
    assert not left.exists() and live.exists() and other_host.exists()
