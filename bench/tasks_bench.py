"""Bench: our training loop against a plain PyTorch loop, and step time per task type.

(a) The same model, the same batches, the same optimiser and schedule, run
    by `tasks.train.train` (hooks, scheduler, clipping, non-finite check) and
    by a bare loop (zero_grad, loss, backward, clip, step), alternating five
    times; prints steps/s of each and their ratio (target >= 0.95).
(b) Seconds per training step of every task type (and detector) on the tiny
    backbone at 64 and 128 px, batch 8, on this machine's CPU threads; with
    the OpenMMLab extra installed (`make openmmlab`), the mm models tested
    here too, with their parameter counts beside the native ones.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from domains import SyntheticDataset  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.model import build_model  # noqa: E402
from tasks.data import InMemory, collate  # noqa: E402
from tasks.train import LossCurve, Schedule, _lr_factor, train  # noqa: E402

VARIANTS = [("segmentation", {}), ("depth", {}), ("detection", {"detector": "fcos"}),
            ("detection", {"detector": "retinanet"}), ("detection", {"detector": "faster_rcnn"}), ("keypoints", {})]  # fmt: skip
MM_VARIANTS = [("detection", {"backend": "openmmlab", "mm_detector": c}) for c in
               ("retinanet_r50_fpn_1x_coco", "fcos_r50-caffe_fpn_gn-head_1x_coco", "faster-rcnn_r50_fpn_1x_coco")] + [
              ("segmentation", {"backend": "openmmlab", "mm_segmentor": c}) for c in
               ("fcn_r50-d8_4xb2-40k_cityscapes-512x1024", "segformer_mit-b0_8xb2-160k_ade20k-512x512")]  # fmt: skip


def variants() -> list[tuple[str, dict]]:
    from tasks import openmmlab

    return VARIANTS + (MM_VARIANTS if openmmlab.available() else [])


def label(task_name: str, options: dict) -> str:
    if options.get("backend") == "openmmlab":
        return "mm " + (options.get("mm_detector") or options.get("mm_segmentor")).split("_")[0]
    return task_name + (f" ({options['detector']})" if options else "")


def plain_loop(model, task, data, sched: Schedule, seed: int) -> None:
    """The loop anyone would write: same batches, optimiser and schedule, nothing else."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=sched.lr, weight_decay=sched.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, sched))
    n = len(data)
    order, cursor = torch.randperm(n, generator=generator), 0
    model.train()
    for _ in range(sched.steps):
        if cursor + sched.batch_size > n and cursor > 0:
            order, cursor = torch.randperm(n, generator=generator), 0
        batch = collate([data[i] for i in order[cursor : cursor + sched.batch_size].tolist()])
        cursor += sched.batch_size
        loss = task.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), sched.clip_grad)
        opt.step()
        lr_sched.step()


def loop_ratio(task_name: str = "segmentation", size: int = 64, steps: int = 30, rounds: int = 5) -> None:
    ds = SyntheticDataset("bench", "driving", "train", 64, size)
    data, task = InMemory.of(ds), get_task(task_name)
    sched = Schedule(steps=steps, batch_size=16)
    ours, plain = [], []
    for r in range(rounds):
        for name, fn, times in (("ours", None, ours), ("plain", plain_loop, plain)):
            model = build_model("test_resnet", task_name, ds.info, seed=r)
            t0 = time.perf_counter()
            if fn is None:
                train(model, task, data, sched, seed=r, hooks=(LossCurve(),))
            else:
                fn(model, task, data, sched, seed=r)
            times.append(time.perf_counter() - t0)
    best_ours, best_plain = min(ours), min(plain)
    print(f"(a) {task_name} {size}px, {steps} steps x batch 16, best of {rounds}: ours {steps / best_ours:.2f} steps/s, "
          f"plain loop {steps / best_plain:.2f} steps/s, ratio {best_plain / best_ours:.3f} (target >= 0.95)")  # fmt: skip


def step_times(sizes=(64, 128), steps: int = 6, batch: int = 8) -> None:
    print(f"(b) seconds per training step, batch {batch}, test_resnet, {torch.get_num_threads()} CPU threads")
    print(f"    {'task':<26}" + "".join(f"{s:>8}px" for s in sizes) + "   head params")
    for task_name, options in variants():
        row = []
        for size in sizes:
            ds = SyntheticDataset("bench", "driving", "train", 32, size)
            data, task = InMemory.of(ds), get_task(task_name, options)
            model = build_model("test_resnet", task_name, ds.info, seed=0, options=options)
            train(model, task, data, Schedule(steps=2, batch_size=batch), seed=0)  # warm up
            t0 = time.perf_counter()
            train(model, task, data, Schedule(steps=steps, batch_size=batch), seed=0)
            row.append((time.perf_counter() - t0) / steps)
        params = sum(p.numel() for p in model.head.parameters()) / 1e6
        print(f"    {label(task_name, options):<26}" + "".join(f"{t:>10.3f}" for t in row) + f"{params:>12.2f}M")
        assert all(math.isfinite(t) for t in row)


if __name__ == "__main__":
    loop_ratio()
    step_times()
