"""Object detection: a torchvision detector (FCOS, RetinaNet or Faster R-CNN) over our backbone and FPN.

No hand-written detector: torchvision builds the heads, the anchors, the
losses and the post-processing; we hand it the shared backbone and neck
through `DetectorHead.attach`, so its state dict holds only head tensors and
the backbone and neck stay where `tasks.transfer` finds them. Evaluation is
COCO box AP through pycocotools (`tasks.coco`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from domains import DatasetInfo
from tasks.base import TASKS, Batch, Task
from tasks.coco import CocoAP
from tasks.model import MEAN, STD
from tasks.openmmlab import DEFAULT_DETECTOR, delegate

DETECTORS = ("fcos", "retinanet", "faster_rcnn")


class _Features(nn.Module):
    """What a torchvision detector calls as its backbone: the task model's backbone and neck.

    It owns no weights (they live in the task model); `fn` is set by `attach`.
    """

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.fn: Callable[[torch.Tensor], OrderedDict[str, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if self.fn is None:
            raise RuntimeError("detector head used before TaskModel attached its backbone")
        return self.fn(x)


def _anchors(strides: list[int], ratios: tuple[float, ...], scales: tuple[float, ...]):
    """One anchor set per FPN level, sized from the level's stride (2x stride at scale 1)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple(tuple(2 * s * k for k in scales) for s in strides)
    return AnchorGenerator(sizes, (ratios,) * len(strides))


def build_detector(kind: str, neck: nn.Module, num_classes: int, image_size: int, num_keypoints: int = 0) -> nn.Module:
    """A torchvision detector over `neck`'s levels; `num_classes` counts the background (id 0).

    Images are normalised with ImageNet statistics and kept at `image_size`
    (no resizing beyond that), anchors follow the neck's strides, and the
    region heads are sized for small images on small budgets.
    """
    # torchvision imports in seconds: only when a detector is built, not when the CLI starts
    from torchvision.models.detection import FCOS, FasterRCNN, KeypointRCNN, RetinaNet
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    features, width, strides = _Features(neck.out_channels), neck.out_channels, neck.strides
    common = {"min_size": image_size, "max_size": image_size, "image_mean": MEAN.flatten().tolist(),
              "image_std": STD.flatten().tolist()}  # fmt: skip
    if kind == "fcos":
        return FCOS(features, num_classes, anchor_generator=_anchors(strides, (1.0,), (1.0,)), **common)
    if kind == "retinanet":
        anchors = _anchors(strides, (0.5, 1.0, 2.0), (1.0, 2 ** (1 / 3), 2 ** (2 / 3)))
        return RetinaNet(features, num_classes, anchor_generator=anchors, **common)
    roi_levels = [str(i) for i in range(len(strides) - 1)]  # every level but the pooled one
    rcnn = {
        "rpn_anchor_generator": _anchors(strides, (0.5, 1.0, 2.0), (1.0,)),
        "box_roi_pool": MultiScaleRoIAlign(roi_levels, 7, 2),
        "box_head": TwoMLPHead(width * 7 * 7, 256),
        "box_predictor": FastRCNNPredictor(256, num_classes),
        "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150,
        "box_batch_size_per_image": 128,
    }  # fmt: skip
    if kind == "faster_rcnn":
        return FasterRCNN(features, **rcnn, **common)
    if kind == "keypoint_rcnn":
        return KeypointRCNN(
            features, **rcnn, **common, box_detections_per_img=20,  # COCO's keypoint AP looks at 20 per image
            keypoint_roi_pool=MultiScaleRoIAlign(roi_levels, 14, 2),
            keypoint_head=KeypointRCNNHeads(width, (width,) * 4),
            keypoint_predictor=KeypointRCNNPredictor(width, num_keypoints),
        )  # fmt: skip
    raise ValueError(f"unknown detector {kind!r}; expected one of: {', '.join(DETECTORS)}, keypoint_rcnn")


class DetectorHead(nn.Module):
    """A torchvision detector as a task head: `detector(images, targets)` in torchvision's own forms."""

    def __init__(self, detector: nn.Module, keypoint_category: int = -1) -> None:
        super().__init__()
        self.detector = detector
        self.keypoint_category = keypoint_category  # keypoints: the id in `things` of the class with keypoints

    def attach(self, features: Callable[[torch.Tensor], OrderedDict[str, torch.Tensor]]) -> None:
        self.detector.backbone.fn = features

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        return self.detector(images, targets)


def instance_targets(batch: Batch, keep: Callable[[int], torch.Tensor] | None = None) -> list[dict[str, torch.Tensor]]:
    """torchvision targets from a batch: boxes, labels + 1 (0 is the background), keypoints when present.

    Degenerate boxes (no width or height) are dropped; `keep(i)` may select instances further.
    """
    targets = []
    for i, boxes in enumerate(batch["boxes"]):
        sel = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if keep is not None:
            sel &= keep(i)
        t = {"boxes": boxes[sel], "labels": batch["labels"][i][sel] + 1}
        if "keypoints" in batch:
            t["keypoints"] = batch["keypoints"][i][sel]
        targets.append(t)
    return targets


def from_torchvision(predictions: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Predictions with labels back in the label space (background predictions dropped)."""
    out = []
    for p in predictions:
        fg = p["labels"] > 0
        out.append({k: v[fg] for k, v in p.items()} | {"labels": p["labels"][fg] - 1})
    return out


@TASKS.register("detection")
class Detection(Task):
    name = "detection"
    primary_metric = "ap"
    higher_is_better = True
    OPTIONS = ("detector", "backend", "mm_detector")

    def __init__(self, detector: Literal["fcos", "retinanet", "faster_rcnn"] = "fcos",
                 backend: Literal["native", "openmmlab"] = "native", mm_detector: str = DEFAULT_DETECTOR) -> None:  # fmt: skip
        """`detector` picks the torchvision detector; `backend="openmmlab"` the mmdet config `mm_detector` instead."""
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; expected one of: {', '.join(DETECTORS)}")
        self.detector = detector
        self.mm = delegate("detection", backend, mm_detector)  # None: native (tasks/openmmlab/detection.py)

    def build_head(self, neck: nn.Module, info: DatasetInfo) -> nn.Module:
        if self.mm is not None:
            return self.mm.build_head(neck, info)
        if not info.things:
            raise ValueError(f"dataset {info.name!r} has no object classes (things) to detect")
        return DetectorHead(build_detector(self.detector, neck, len(info.things) + 1, info.image_size))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if self.mm is not None:
            return self.mm.loss(model, batch)
        losses = model.head(list(batch["image"]), instance_targets(batch))
        return sum(losses.values())

    def predict(self, model: nn.Module, batch: Batch) -> list[dict[str, torch.Tensor]]:
        if self.mm is not None:
            return self.mm.predict(model, batch)
        return from_torchvision(model.head(list(batch["image"])))

    def metric(self, info: DatasetInfo) -> CocoAP:
        return CocoAP("bbox", info.things)

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        if self.mm is not None:  # names the backend and config: heads never move across backends
            return self.mm.label_space(info)
        return (f"detector={self.detector}", *info.things)
