"""Semantic segmentation: a dense head on the FPN, cross-entropy with ignore, dataset-level mIoU."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from domains import IGNORE, DatasetInfo
from tasks.base import TASKS, Batch, DenseTask
from tasks.heads import DenseHead
from tasks.openmmlab import DEFAULT_SEGMENTOR, delegate


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
    primary_metric = "miou"
    higher_is_better = True
    OPTIONS = ("backend", "mm_segmentor")

    def __init__(self, backend: Literal["native", "openmmlab"] = "native", mm_segmentor: str = DEFAULT_SEGMENTOR) -> None:
        """The native dense head, or with `backend="openmmlab"` the mmseg config `mm_segmentor`."""
        self.mm = delegate("segmentation", backend, mm_segmentor)  # None: native (tasks/openmmlab/segmentation.py)

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        if self.mm is not None:
            return self.mm.build_head(neck, info)
        return DenseHead(neck.out_channels, len(info.classes))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.mm.loss(model, batch) if self.mm is not None else super().loss(model, batch)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.mm.predict(model, batch) if self.mm is not None else super().predict(model, batch)

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        if self.mm is not None:  # names the backend and config: heads never move across backends
            return self.mm.label_space(info)
        return info.classes

    def criterion(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output, batch["segmentation"], ignore_index=IGNORE)

    def metric(self, info: DatasetInfo) -> MeanIoU:
        return MeanIoU(len(info.classes))
