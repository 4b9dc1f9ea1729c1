"""What every task type exposes: a head, a loss, predictions, a metric, and its primary metric's direction.

One module per task type (`segmentation.py`, `depth.py`, `detection.py`,
`keypoints.py`) registers a `Task` under its name with `@TASKS.register(name)`;
`get_task(name, options)` is the one entry. A batch holds the dense keys of
the standard sample form stacked ([B, ...]) and the per-object keys (`boxes`,
`labels`, `keypoints`) as lists of B tensors.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from domains import DatasetInfo
from domains.registry import Registry

Batch = dict[str, Any]


class FeatureInfo(Protocol):
    """timm's `feature_info`: channels and stride of each feature map a backbone returns."""

    def channels(self) -> list[int]: ...

    def reduction(self) -> list[int]: ...


class EmptySplitError(ValueError):
    """A split with nothing to score (no valid depth pixel, no ground-truth object): its metric is undefined.
    The job that meets it fails naming the dataset and split, rather than reporting a number."""


class Metric(Protocol):
    """Accumulates over a whole split; `compute` returns flat `{name: float}`."""

    def update(self, predictions: Any, batch: Batch) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task:
    """The surface every task type has. Subclasses set the class attributes and the methods."""

    name: str
    primary_metric: str
    higher_is_better: bool
    OPTIONS: tuple[str, ...] = ()  # the study's model choices this task reads (keyword arguments)

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        """The head over the neck's levels (`neck.out_channels`, `neck.strides`) for `info`'s label space."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss (a scalar) of `model` (in train mode) on `batch`."""
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: Batch) -> Any:
        """What the metric consumes: `model`'s predictions (in eval mode) for `batch`."""
        raise NotImplementedError

    def metric(self, info: DatasetInfo) -> Metric:
        raise NotImplementedError

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        """The names a head's outputs index: a head transfers only between equal label spaces."""
        return info.classes

    def prepare(self, model: nn.Module, data: torch.utils.data.Dataset, workers: int = 0) -> None:
        """Set what a fresh head should start from, given the training data (e.g. its typical depth). Default: nothing."""


class DenseTask(Task):
    """A task predicting a map per pixel with `TaskModel.forward`."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.criterion(model(batch["image"]), batch)

    def criterion(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["image"])


TASKS: Registry[type[Task]] = Registry("task")


def register_tasks() -> None:
    """Import every task module, which registers its task in `TASKS` (once: imports are cached)."""
    from tasks import depth, detection, keypoints, segmentation  # noqa: F401


def get_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """The task registered as `name`, given the study's model `options` it reads (others are ignored).

    An unknown name raises an error listing the valid ones.
    """
    register_tasks()
    cls = TASKS.get(name)
    return cls(**{k: v for k, v in (options or {}).items() if k in cls.OPTIONS})
