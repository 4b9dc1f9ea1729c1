"""What every task type exposes: a head, a loss, a metric, and its primary metric's direction.

One module per task type (`segmentation.py`, `depth.py`, ...) registers a `Task`
under its name with `@TASKS.register(name)`; `get_task(name)` is the one entry.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from domains import DatasetInfo
from domains.registry import Registry

Batch = dict[str, torch.Tensor]


class FeatureInfo(Protocol):
    """timm's `feature_info`: channels and stride of each feature map a backbone returns."""

    def channels(self) -> list[int]: ...

    def reduction(self) -> list[int]: ...


class Metric(Protocol):
    """Accumulates over a whole split; `compute` returns flat `{name: float}`."""

    def update(self, output: torch.Tensor, batch: Batch) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task:
    name: str
    label: str  # the sample key holding this task's labels
    primary_metric: str
    higher_is_better: bool

    def build_head(self, feature_info: FeatureInfo, info: DatasetInfo) -> nn.Module:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, info: DatasetInfo) -> Metric:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task")


def get_task(name: str) -> Task:
    """The task registered as `name`; an unknown name raises an error listing the valid ones."""
    return TASKS.get(name)()
