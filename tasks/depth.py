"""Monocular depth: a dense head on the FPN regressing log-depth; AbsRel / RMSE / delta<1.25.

Losses (the study's `model.depth_loss`): `log_l1`, L1 on log-depth; or
`scale_invariant`, Eigen et al.'s scale-invariant log error (lambda = 0.85,
as in BTS and AdaBins): sqrt(mean(d^2) - lambda * mean(d)^2), d = log pred - log gt.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from domains import DatasetInfo
from tasks.base import TASKS, Batch, DenseTask, EmptySplitError
from tasks.heads import DenseHead

SI_LAMBDA = 0.85


def predicted_depth(output: torch.Tensor) -> torch.Tensor:
    """The head predicts log-depth [B, 1, H, W]; metres [B, H, W]."""
    return output[:, 0].clamp(-10.0, 10.0).exp()


class DepthErrors:
    """Depth errors over every valid pixel of a split (ground truth > 0)."""

    def __init__(self) -> None:
        self.abs_rel = self.sq = self.delta1 = 0.0
        self.n = 0

    def update(self, output: torch.Tensor, batch: Batch) -> None:
        gt = batch["depth"].double()
        valid = gt > 0
        pred, gt = predicted_depth(output).double()[valid], gt[valid]
        self.abs_rel += float(((pred - gt).abs() / gt).sum())
        self.sq += float(((pred - gt) ** 2).sum())
        self.delta1 += float((torch.maximum(pred / gt, gt / pred) < 1.25).sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            raise EmptySplitError("no pixel with valid depth (> 0): depth errors are undefined")
        n = self.n
        return {"abs_rel": self.abs_rel / n, "rmse": (self.sq / n) ** 0.5, "delta1": self.delta1 / n}


@TASKS.register("depth")
class Depth(DenseTask):
    name = "depth"
    primary_metric = "abs_rel"
    higher_is_better = False
    OPTIONS = ("depth_loss",)

    def __init__(self, depth_loss: Literal["log_l1", "scale_invariant"] = "log_l1") -> None:
        if depth_loss not in ("log_l1", "scale_invariant"):
            raise ValueError(f"unknown depth_loss {depth_loss!r}; expected one of: log_l1, scale_invariant")
        self.depth_loss = depth_loss

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        return DenseHead(neck.out_channels, 1)

    def criterion(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        gt = batch["depth"]
        valid = gt > 0
        if not valid.any():
            return output.sum() * 0.0
        d = output[:, 0][valid] - gt[valid].log()  # log-depth residuals of valid pixels
        if self.depth_loss == "log_l1":
            return d.abs().mean()
        return ((d**2).mean() - SI_LAMBDA * d.mean() ** 2).clamp_min(1e-8).sqrt()

    def prepare(self, model: nn.Module, data: torch.utils.data.Dataset, workers: int = 0) -> None:
        """Start the head at the training data's median log-depth: a scene 93 m away is not learnt from 1 m in
        50 steps. The predictor's weights start at zero, so the first prediction is that constant everywhere."""
        from tasks.reference import median_log_depth

        with torch.no_grad():
            model.head.predict.weight.zero_()
            model.head.predict.bias.fill_(median_log_depth(data, workers))

    def metric(self, info: DatasetInfo) -> DepthErrors:
        return DepthErrors()

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        return ("depth",)
