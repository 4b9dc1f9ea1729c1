"""The training loop: loss, backward, step. Logging, checkpointing and evaluation are hooks.

Call order for each hook: `before_train(model)`, then per step
`after_step(step, loss)`, then `after_train(model)`. On CPU the same seed
gives the same weights and metrics: batches and flips come from a seeded
generator, and the model is built from `torch.manual_seed(seed)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from domains import Sample
from domains.transforms import random_hflip
from tasks.base import Task


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


def materialize(dataset: torch.utils.data.Dataset) -> Sample:
    """Every sample of `dataset` stacked into one batch (subsets here are small)."""
    samples = [dataset[i] for i in range(len(dataset))]
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def _lr_factor(step: int, sched: Schedule) -> float:
    warm = max(1, int(sched.warmup * sched.steps))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, sched.steps - warm)
    return 0.5 * (1 + math.cos(math.pi * t)) if sched.decay == "cosine" else (1 - t) ** 0.9


def train(model: nn.Module, task: Task, data: Sample, sched: Schedule, seed: int, hooks: tuple[Hook, ...] = ()) -> None:
    """Train `model` on `data` (a materialised batch of all samples) for `sched.steps` steps."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if sched.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=sched.lr, weight_decay=sched.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=sched.lr, momentum=0.9, weight_decay=sched.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, sched))
    n = data["image"].shape[0]
    order = torch.randperm(n, generator=generator)
    cursor = 0
    model.train()
    for hook in hooks:
        hook.before_train(model)
    for step in range(sched.steps):
        if cursor + sched.batch_size > n:  # next epoch
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + sched.batch_size]
        cursor += sched.batch_size
        batch = random_hflip({k: v[idx] for k, v in data.items()}, generator)
        loss = task.loss(model(batch["image"]), batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(step, value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if sched.clip_grad > 0:
            nn.utils.clip_grad_norm_(params, sched.clip_grad)
        opt.step()
        lr_sched.step()
        for hook in hooks:
            hook.after_step(step, value)
    for hook in hooks:
        hook.after_train(model)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: Sample, metric, batch_size: int = 32) -> dict[str, float]:
    """Run `model` over `data` and return `metric.compute()`: flat {name: float}."""
    model.eval()
    n = data["image"].shape[0]
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        metric.update(model(batch["image"]), batch)
    return metric.compute()
