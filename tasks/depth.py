"""Monocular depth: FPN decoder regressing log-depth, L1 on log-depth, AbsRel / RMSE / delta<1.25."""

from __future__ import annotations

import torch
from torch import nn

from domains import DatasetInfo
from tasks.base import TASKS, Batch, FeatureInfo, Task
from tasks.heads import FPNDecoder


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
        n = max(self.n, 1)
        return {"abs_rel": self.abs_rel / n, "rmse": (self.sq / n) ** 0.5, "delta1": self.delta1 / n}


@TASKS.register("depth")
class Depth(Task):
    name = "depth"
    label = "depth"
    primary_metric = "abs_rel"
    higher_is_better = False

    def build_head(self, feature_info: FeatureInfo, info: DatasetInfo) -> nn.Module:
        return FPNDecoder(feature_info, 1)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        gt = batch["depth"]
        valid = gt > 0
        if not valid.any():
            return output.sum() * 0.0
        return (output[:, 0][valid] - gt[valid].log()).abs().mean()

    def metric(self, info: DatasetInfo) -> DepthErrors:
        return DepthErrors()
