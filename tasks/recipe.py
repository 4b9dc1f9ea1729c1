"""Train one job from its spec: build the model, load the upstream weights, stream the data, train, evaluate, save.

    recipe = Recipe(task="depth", backbone="test_resnet", schedule=Schedule(steps=50), seed=0, image_size=64)
    outcome = run_recipe(recipe, train_data, eval_data, upstream=open("source.pt", "rb"), save=store_fn)
    outcome.metrics, outcome.curve, outcome.moved

`train_data` and `eval_data` are map-style datasets of standard samples with
an `info` (domains/); they are read through DataLoaders with `recipe.workers`
worker processes, never held whole. `upstream` is a readable checkpoint whose
backbone (and neck; the head only when the model options ask and it matches)
moves into the new model (tasks.transfer). `save(model, meta)` is called once
after training, for jobs that others build on. Imports neither Ray nor MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import torch
from torch import nn

from tasks.base import get_task
from tasks.train import Checkpoint, Evaluate, Hook, LossCurve, Schedule, train
from tasks.transfer import TransferReport, transfer


@dataclass(frozen=True)
class Recipe:
    task: str  # the task type trained and evaluated
    backbone: str  # a timm model name
    schedule: Schedule
    seed: int
    image_size: int  # training crops are image_size square
    init: str = "scratch"  # the fresh model's weights before any upstream ones: "scratch" or "imagenet"
    model: dict[str, Any] = field(default_factory=dict)  # the study's ModelSpec fields
    workers: int = 0  # DataLoader worker processes (0: read in this process)


@dataclass
class Outcome:
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool
    curve: list[tuple[int, float]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_recipe(recipe: Recipe, train_data: torch.utils.data.Dataset, eval_data: torch.utils.data.Dataset,
               upstream: BinaryIO | None = None,
               save: Callable[[nn.Module, dict[str, Any]], Any] | None = None) -> Outcome:  # fmt: skip
    """Train `recipe` on `train_data`, evaluate on `eval_data`, save through `save`; see the module docstring."""
    from domains.transforms import augment
    from tasks.model import build_model

    task = get_task(recipe.task, recipe.model)
    info = train_data.info
    model = build_model(recipe.backbone, recipe.task, info, recipe.seed, init=recipe.init, options=recipe.model)
    if torch.cuda.is_available():  # with `resources: {KIND: {num_gpus: ...}}` Ray sets CUDA_VISIBLE_DEVICES
        model = model.cuda()
    label_space = task.label_space(info)
    report = TransferReport()
    if upstream is not None:
        report = transfer(model, upstream, head=recipe.model.get("transfer_head", False), task=recipe.task,
                          label_space=label_space)  # fmt: skip
    if not report.head_moved:
        task.prepare(model, train_data, recipe.workers)
    steps = recipe.schedule.steps
    curve = LossCurve(every=max(1, steps // 20))
    evaluation = Evaluate(task, eval_data, lambda: task.metric(info), workers=recipe.workers)
    hooks: list[Hook] = [curve, evaluation]
    if save is not None:
        meta = {"backbone": recipe.backbone, "task": recipe.task, "label_space": list(label_space)}
        hooks.append(Checkpoint(partial(save, meta=meta)))
    flip_pairs = info.keypoints.flip_pairs if info.keypoints else ()
    augmentation = partial(augment, size=recipe.image_size, flip_pairs=flip_pairs)  # Mensink's rescale, crop, flip
    train(model, task, train_data, recipe.schedule, recipe.seed, tuple(hooks), augment=augmentation,
          workers=recipe.workers)  # fmt: skip
    return Outcome(metrics=evaluation.final, primary_metric=task.primary_metric, higher_is_better=task.higher_is_better,
                   curve=curve.points, moved=report.moved, skipped=report.skipped)  # fmt: skip
