"""The training loop: loss, backward, step. Logging, checkpointing and evaluation are hooks.

    train(model, task, data, Schedule(steps=100), seed=0, hooks=(LossCurve(), Checkpoint(path, meta)))

Hook call order: `before_train(model)`; then for each step `after_step(step,
loss)` (after the optimiser and scheduler steps); then `after_train(model)`.
Data streams through a DataLoader (tasks/data.py): its workers read and
augment the samples. On CPU the same seed gives the same weights and metrics
whatever the worker count and whatever ran before: batch order and each
sample's augmentation seed come from one seeded generator, the model is built
from its seed (tasks.model.build_model), and what the loop draws from torch's
global generator (Faster R-CNN's box sampler) comes from a state seeded by
`seed`, restored when training ends. On CUDA the loop uses automatic mixed
precision (bfloat16 where supported, else float16 with a gradient scaler) and
channels_last memory format.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from tasks.base import Batch, Task
from tasks.data import Augment, collate, eval_loader, train_loader  # noqa: F401  (collate: part of this surface)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the scheduler records it as the job's failure reason."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step, self.value = step, value


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of steps with a linear ramp
    optimizer: Literal["adamw", "sgd"] = "adamw"
    decay: Literal["cosine", "poly"] = "cosine"
    clip_grad: float = 1.0


class Hook:
    def before_train(self, model: nn.Module) -> None: ...

    def after_step(self, step: int, loss: float) -> None: ...

    def after_train(self, model: nn.Module) -> None: ...


class LossCurve(Hook):
    """Keeps the mean training loss over every `every` steps: [(step, loss), ...]."""

    def __init__(self, every: int = 10) -> None:
        self.every, self.points, self._acc = every, [], []

    def after_step(self, step: int, loss: float) -> None:
        self._acc.append(loss)
        if len(self._acc) == self.every:
            self.points.append((step, sum(self._acc) / len(self._acc)))
            self._acc = []


class Evaluate(Hook):
    """Evaluates the trained model on `data` with a fresh `metric()`; `final` holds its metrics."""

    def __init__(self, task: Task, data: Dataset, metric: Callable[[], Any], workers: int = 0) -> None:
        self.task, self.data, self.metric, self.workers = task, data, metric, workers
        self.final: dict[str, float] = {}

    def after_train(self, model: nn.Module) -> None:
        self.final = evaluate(model, self.task, self.data, self.metric(), workers=self.workers)


class Checkpoint(Hook):
    """Saves the trained model after training with `save(model)` (e.g. a checkpoint store's atomic write)."""

    def __init__(self, save: Callable[[nn.Module], Any]) -> None:
        self.save = save

    def after_train(self, model: nn.Module) -> None:
        self.save(model)


def to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return {k: ([t.to(device, non_blocking=True) for t in v] if isinstance(v, list) else v.to(device, non_blocking=True))
            for k, v in batch.items()}  # fmt: skip


def _lr_factor(step: int, sched: Schedule) -> float:
    warm = max(1, int(sched.warmup * sched.steps))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, sched.steps - warm)
    return 0.5 * (1 + math.cos(math.pi * t)) if sched.decay == "cosine" else (1 - t) ** 0.9


def _autocast(device: torch.device) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler | None]:
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def train(model: nn.Module, task: Task, data: Dataset, sched: Schedule, seed: int, hooks: tuple[Hook, ...] = (),
          augment: Augment | None = None, workers: int = 0) -> None:  # fmt: skip
    """Train `model` on the samples of `data` (a map-style dataset) for `sched.steps` steps.

    Batches stream through a DataLoader with `workers` worker processes (0: in
    this process) that read and augment them (tasks.data): `augment(sample,
    generator)` is applied to each sample (the dense keys must come out of one
    size); None trains on the samples as they are. The same seed gives the
    same batches whatever `workers` is.
    """
    device = next(model.parameters()).device
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if sched.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=sched.lr, weight_decay=sched.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=sched.lr, momentum=0.9, weight_decay=sched.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, sched))
    amp, scaler = _autocast(device)
    # what the loop draws from torch's global generator (Faster R-CNN's box sampler) comes from `seed`;
    # the generator is restored when training ends
    forked = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.default_generator.manual_seed(seed)
        if forked:
            torch.cuda.manual_seed(seed)
        batches = train_loader(data, sched.batch_size, sched.steps, seed, augment, workers, device)
        model.train()
        for hook in hooks:
            hook.before_train(model)
        for step, batch in enumerate(batches):
            batch = to_device(batch, device)
            if device.type == "cuda":
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with amp:
                loss = task.loss(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(step, value)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if sched.clip_grad > 0:
                nn.utils.clip_grad_norm_(params, sched.clip_grad)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            lr_sched.step()
            for hook in hooks:
                hook.after_step(step, value)
        for hook in hooks:
            hook.after_train(model)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: Dataset, metric, batch_size: int = 32, workers: int = 0) -> dict[str, float]:
    """Run `model` over every sample of `data` (streamed in order) and return `metric.compute()`: flat {name: float}."""
    device = next(model.parameters()).device
    model.eval()
    amp, _ = _autocast(device)
    for batch in eval_loader(data, batch_size, workers, device):
        with amp:
            predictions = task.predict(model, to_device(batch, device))
        if isinstance(predictions, torch.Tensor):
            predictions = predictions.float().cpu()
        else:
            predictions = [{k: (v.float() if v.is_floating_point() else v).cpu() for k, v in p.items()}
                           for p in predictions]  # fmt: skip
        metric.update(predictions, batch)
    return metric.compute()
