"""Keypoints: torchvision's Keypoint R-CNN over our backbone and FPN, for the dataset's keypoint category.

Only objects of `info.keypoints.category` with at least one labelled keypoint
are targets (as in COCO, where only people carry keypoints). Evaluation is
COCO OKS keypoint AP through pycocotools with the dataset's own sigmas.
"""

from __future__ import annotations

import torch
from torch import nn

from domains import DatasetInfo
from tasks.base import TASKS, Batch, Task
from tasks.coco import CocoAP
from tasks.detection import DetectorHead, build_detector, from_torchvision, instance_targets


def keypoint_category(info: DatasetInfo) -> int:
    """The id in `info.things` of the class that carries keypoints."""
    if info.keypoints is None:
        raise ValueError(f"dataset {info.name!r} has no keypoint schema")
    return info.things.index(info.keypoints.category)


def keypoint_batch(batch: Batch, cat: int) -> Batch:
    """The batch restricted to objects of class `cat` with a labelled keypoint; their label becomes 0."""
    boxes, labels, kps = [], [], []
    for b, lab, kp in zip(batch["boxes"], batch["labels"], batch["keypoints"], strict=True):
        sel = (lab == cat) & (kp[..., 2] > 0).any(-1)
        boxes.append(b[sel])
        labels.append(torch.zeros_like(lab[sel]))
        kps.append(kp[sel])
    return dict(batch, boxes=boxes, labels=labels, keypoints=kps)


@TASKS.register("keypoints")
class Keypoints(Task):
    name = "keypoints"
    primary_metric = "ap"
    higher_is_better = True

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        cat = keypoint_category(info)
        detector = build_detector("keypoint_rcnn", neck, 2, info.image_size, len(info.keypoints.names))
        return DetectorHead(detector, keypoint_category=cat)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        targets = instance_targets(keypoint_batch(batch, model.head.keypoint_category))
        return sum(model.head(list(batch["image"]), targets).values())

    def predict(self, model: nn.Module, batch: Batch) -> list[dict[str, torch.Tensor]]:
        return from_torchvision(model.head(list(batch["image"])))

    def metric(self, info: DatasetInfo) -> "KeypointAP":
        return KeypointAP(info)

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        keypoint_category(info)
        return (info.keypoints.category, *info.keypoints.names)


class KeypointAP(CocoAP):
    """OKS AP of the keypoint category, ground truth restricted as in training."""

    def __init__(self, info: DatasetInfo) -> None:
        self.category = keypoint_category(info)
        schema = info.keypoints
        super().__init__("keypoints", (schema.category,), schema.oks_sigmas(), schema.names)

    def update(self, predictions: list[dict[str, torch.Tensor]], batch: Batch) -> None:
        super().update(predictions, keypoint_batch(batch, self.category))
