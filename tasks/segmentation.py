"""Semantic segmentation: a dense head on the FPN, cross-entropy with ignore, dataset-level mIoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domains import IGNORE, DatasetInfo
from tasks.base import TASKS, Batch, DenseTask
from tasks.heads import DenseHead


class MeanIoU:
    """mIoU over a whole split: one confusion matrix, IoU per class, mean over classes present.

    A class counts when it appears in the labels or the predictions of the split
    (union > 0); pixels labelled 255 are ignored.
    """

    def __init__(self, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.confmat = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE)

    def update(self, output: torch.Tensor, batch: Batch) -> None:
        self.confmat.update(output.argmax(1), batch["segmentation"])  # [B, C, H, W] -> [B, H, W]

    def compute(self) -> dict[str, float]:
        cm = self.confmat.compute().double()  # [true, pred]
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = tp[present] / union[present]
        total = cm.sum()
        return {
            "miou": float(iou.mean()) if present.any() else 0.0,
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        }


@TASKS.register("segmentation")
class Segmentation(DenseTask):
    name = "segmentation"
    labels = ("segmentation",)
    primary_metric = "miou"
    higher_is_better = True

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        return DenseHead(neck.out_channels, len(info.classes))

    def criterion(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output, batch["segmentation"], ignore_index=IGNORE)

    def metric(self, info: DatasetInfo) -> MeanIoU:
        return MeanIoU(len(info.classes))
