"""Trivial predictors: what a model must beat before its score on a target means anything.

    outcome = fit_and_score("depth", train_data, eval_data)    # the reference a baseline is checked against
    outcome.metrics["abs_rel"]

Each is fitted on the job's training subset, ignores the image, and is scored
by the task's own metric on the same evaluation split as the models:

- segmentation: each pixel's majority training class (the overall majority
  where a pixel was never labelled);
- depth: each pixel's median training depth over valid pixels (the overall
  median where a pixel was never valid);
- detection: a fixed prior, one box per class seen in training, at the mean
  training box of that class, scored by the class's share of the instances;
- keypoints: one object per image at the mean training box of the keypoint
  class, its keypoints at their mean positions relative to that box.

Fitting reads at most `FIT_SAMPLES` samples of the subset (already a random
sample of its split), so a large source split costs no more than a target's.
Label maps of another size than the first sample's are resized (nearest) onto
its grid, and the fitted maps onto each evaluated image's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from domains import DatasetInfo
from tasks.base import Batch, get_task
from tasks.data import eval_loader
from tasks.recipe import Outcome

FIT_SAMPLES = 512


def _batches(data: torch.utils.data.Dataset, workers: int) -> Any:
    """The first FIT_SAMPLES samples of `data` in batches (unaugmented)."""
    n = min(len(data), FIT_SAMPLES)
    if n == 0:
        raise ValueError(f"dataset {getattr(data.info, 'name', '?')!r}: no training samples to fit a reference on")
    return eval_loader(torch.utils.data.Subset(data, range(n)), 32, workers)


def _onto(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, H, W] label maps resized (nearest) to `size`."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="nearest")[:, 0].to(maps.dtype)


def median_log_depth(data: torch.utils.data.Dataset, workers: int = 0) -> float:
    """The median log-depth (log metres) of every valid pixel of `data`'s first FIT_SAMPLES samples."""
    values = [batch["depth"][batch["depth"] > 0].log() for batch in _batches(data, workers)]
    flat = torch.cat(values)
    if flat.numel() == 0:
        raise ValueError(f"dataset {data.info.name!r}: no valid depth pixel to fit on; expected depth > 0 somewhere")
    return float(flat.median())


class PixelMajority:
    """Segmentation: each pixel's majority class over the training maps."""

    def fit(self, data: torch.utils.data.Dataset, info: DatasetInfo, workers: int) -> PixelMajority:
        counts = None
        for batch in _batches(data, workers):
            seg = batch["segmentation"]
            if counts is None:
                counts = torch.zeros(len(info.classes), *seg.shape[-2:], dtype=torch.int64)
            seg = _onto(seg, counts.shape[-2:])
            for c in range(len(info.classes)):
                counts[c] += (seg == c).sum(0)
        overall = counts.sum((1, 2)).argmax()
        self.classes = torch.where(counts.sum(0) > 0, counts.argmax(0), overall)  # [H, W]
        self.n = len(info.classes)
        return self

    def __call__(self, batch: Batch) -> torch.Tensor:
        image = batch["image"]
        grid = _onto(self.classes[None], image.shape[-2:])[0]
        return F.one_hot(grid, self.n).permute(2, 0, 1)[None].expand(len(image), -1, -1, -1).float()


class PixelMedian:
    """Depth: each pixel's median valid training depth; the head's output form (log-depth [B, 1, H, W])."""

    def fit(self, data: torch.utils.data.Dataset, info: DatasetInfo, workers: int) -> PixelMedian:
        maps = []
        for batch in _batches(data, workers):
            grid = batch["depth"].shape[-2:] if not maps else maps[0].shape[-2:]
            maps.append(_onto(batch["depth"], grid))
        depth = torch.cat(maps).double()  # [N, H, W], at most FIT_SAMPLES maps
        valid = depth > 0
        if not valid.any():
            raise ValueError(f"dataset {info.name!r}: no valid depth pixel to fit on; expected depth > 0 somewhere")
        overall = depth[valid].log().median()
        logd = torch.where(valid, depth.clamp_min(1e-12).log(), torch.nan).nanmedian(0).values
        self.log_depth = torch.where(valid.any(0), logd, overall).float()  # [H, W]
        return self

    def __call__(self, batch: Batch) -> torch.Tensor:
        image = batch["image"]
        grid = F.interpolate(self.log_depth[None, None], size=image.shape[-2:], mode="nearest")
        return grid.expand(len(image), -1, -1, -1)


class MeanBox:
    """Detection: one box per class at the class's mean training box (relative to the image), scored by its share."""

    def boxes_of(self, batch: Batch, info: DatasetInfo) -> Batch:
        return batch

    def fit(self, data: torch.utils.data.Dataset, info: DatasetInfo, workers: int) -> MeanBox:
        sums: dict[int, torch.Tensor] = {}
        counts: dict[int, int] = {}
        for batch in _batches(data, workers):
            batch = self.boxes_of(batch, info)
            h, w = batch["image"].shape[-2:]
            scale = torch.tensor([w, h, w, h], dtype=torch.float64)
            for i, (boxes, labels) in enumerate(zip(batch["boxes"], batch["labels"], strict=True)):
                self.accumulate(batch, i, boxes.double() / scale, labels, sums, counts)
        total = sum(counts.values())
        self.priors = {c: (sums[c] / counts[c], counts[c] / total) for c in sorted(counts)}
        return self

    def accumulate(self, batch: Batch, i: int, boxes: torch.Tensor, labels: torch.Tensor,
                   sums: dict[int, torch.Tensor], counts: dict[int, int]) -> None:  # fmt: skip
        for box, label in zip(boxes, labels.tolist(), strict=True):
            sums[label] = sums.get(label, 0) + box
            counts[label] = counts.get(label, 0) + 1

    def __call__(self, batch: Batch) -> list[dict[str, torch.Tensor]]:
        h, w = batch["image"].shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float64)
        labels = torch.tensor(list(self.priors), dtype=torch.int64)
        boxes = torch.stack([b for b, _ in self.priors.values()]) * scale if self.priors else torch.zeros(0, 4)
        scores = torch.tensor([s for _, s in self.priors.values()], dtype=torch.float32)
        pred = {"boxes": boxes.float(), "labels": labels, "scores": scores}
        return [dict(pred) for _ in range(len(batch["image"]))]


class MeanPose(MeanBox):
    """Keypoints: the mean box of the keypoint class, with each keypoint at its mean position inside the box."""

    def boxes_of(self, batch: Batch, info: DatasetInfo) -> Batch:
        from tasks.keypoints import keypoint_batch, keypoint_category

        return keypoint_batch(batch, keypoint_category(info))  # keypoint objects only, label 0

    def fit(self, data: torch.utils.data.Dataset, info: DatasetInfo, workers: int) -> MeanPose:
        k = len(info.keypoints.names)
        self.kp_sum, self.kp_n = torch.zeros(k, 2, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        super().fit(data, info, workers)
        self.relative = torch.where(self.kp_n[:, None] > 0, self.kp_sum / self.kp_n.clamp_min(1)[:, None], 0.5)
        return self

    def accumulate(self, batch: Batch, i: int, boxes: torch.Tensor, labels: torch.Tensor,
                   sums: dict[int, torch.Tensor], counts: dict[int, int]) -> None:  # fmt: skip
        super().accumulate(batch, i, boxes, labels, sums, counts)
        h, w = batch["image"].shape[-2:]
        kps = batch["keypoints"][i].double()  # [N, K, 3] pixels
        for box, kp in zip(boxes, kps, strict=True):
            x0, y0, x1, y1 = (box * torch.tensor([w, h, w, h], dtype=torch.float64)).tolist()
            size = torch.tensor([max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)], dtype=torch.float64)
            seen = kp[:, 2] > 0
            self.kp_sum[seen] += (kp[seen, :2] - torch.tensor([x0, y0], dtype=torch.float64)) / size
            self.kp_n[seen] += 1

    def __call__(self, batch: Batch) -> list[dict[str, torch.Tensor]]:
        preds = super().__call__(batch)
        for pred in preds:
            x0, y0, x1, y1 = pred["boxes"].double().unbind(-1)
            xy = torch.stack([x0, y0], -1)[:, None] + self.relative[None] * torch.stack([x1 - x0, y1 - y0], -1)[:, None]
            pred["keypoints"] = torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], -1).float()  # [M, K, 3]
        return preds


TRIVIAL = {"segmentation": PixelMajority, "depth": PixelMedian, "detection": MeanBox, "keypoints": MeanPose}


def fit_and_score(task_name: str, train_data: torch.utils.data.Dataset, eval_data: torch.utils.data.Dataset,
                  options: dict[str, Any] | None = None, workers: int = 0) -> Outcome:  # fmt: skip
    """Fit `task_name`'s trivial predictor on `train_data`, score it on `eval_data` with the task's metric."""
    task = get_task(task_name, options)
    info = train_data.info
    predictor = TRIVIAL[task_name]().fit(train_data, info, workers)
    metric = task.metric(info)
    for batch in eval_loader(eval_data, 32, workers):
        metric.update(predictor(batch), batch)
    return Outcome(metrics=metric.compute(), primary_metric=task.primary_metric,
                   higher_is_better=task.higher_is_better)  # fmt: skip
