"""COCO average precision through pycocotools: box AP and keypoint OKS AP over a whole split.

    metric = CocoAP("bbox", ("car", "person"))
    metric.update(predictions, batch)   # predictions: one dict per image (torchvision's output form)
    metric.compute()                    # {"ap": .., "ap50": .., "ap75": .., "ap_small": .., ...}

Ground truth comes from the batch in the standard form (`boxes` xyxy, `labels`
and, for keypoints, `keypoints` [N, K, 3]); labels are ids into the label space,
and category ids in the COCO structures are those ids + 1. Keypoint AP uses the
dataset's own OKS sigmas, and each object's area is its box area (the
procedural and box-only datasets have no segment areas). A split with no
ground-truth object raises EmptySplitError (AP is undefined there; pycocotools
would say -1); with objects but no predictions, AP = 0.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Literal

import numpy as np
import torch

from tasks.base import EmptySplitError

# the first six of COCOeval.stats, the same for both iou types
NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")
KEYPOINT_NAMES = ("ap", "ap50", "ap75", "ap_medium", "ap_large")


def _xywh(box: list[float]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


class CocoAP:
    """Accumulates ground truth and predictions image by image; `compute` runs COCOeval once."""

    def __init__(self, iou_type: Literal["bbox", "keypoints"], categories: tuple[str, ...],
                 sigmas: tuple[float, ...] | None = None, keypoint_names: tuple[str, ...] = ()) -> None:  # fmt: skip
        if iou_type == "keypoints" and not sigmas:
            raise ValueError("keypoint AP needs the dataset's OKS sigmas")
        self.iou_type, self.categories = iou_type, categories
        self.sigmas, self.keypoint_names = sigmas, keypoint_names
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.dt: list[dict[str, Any]] = []

    def update(self, predictions: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        """`predictions[i]`: boxes [M, 4] xyxy, labels [M] (label-space ids), scores [M], keypoints [M, K, 3]."""
        height, width = batch["image"].shape[-2:]
        for i, pred in enumerate(predictions):
            image_id = len(self.images) + 1
            self.images.append({"id": image_id, "width": int(width), "height": int(height)})
            boxes, labels = batch["boxes"][i].tolist(), batch["labels"][i].tolist()
            kps = batch["keypoints"][i] if self.iou_type == "keypoints" else None
            for j, (box, label) in enumerate(zip(boxes, labels, strict=True)):
                ann = {"id": len(self.gt) + 1, "image_id": image_id, "category_id": int(label) + 1,
                       "bbox": _xywh(box), "area": (box[2] - box[0]) * (box[3] - box[1]), "iscrowd": 0}  # fmt: skip
                if kps is not None:
                    ann["keypoints"] = kps[j].flatten().tolist()
                    ann["num_keypoints"] = int((kps[j][:, 2] > 0).sum())
                self.gt.append(ann)
            for j, (box, label, score) in enumerate(
                zip(pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist(), strict=True)
            ):
                det = {"image_id": image_id, "category_id": int(label) + 1, "bbox": _xywh(box), "score": float(score)}
                if self.iou_type == "keypoints":
                    det["keypoints"] = pred["keypoints"][j].flatten().tolist()
                self.dt.append(det)

    def coco_eval(self):
        """The evaluated COCOeval (None when there is no prediction)."""
        from pycocotools.coco import COCO  # imports matplotlib: only when a split is scored
        from pycocotools.cocoeval import COCOeval

        categories = [{"id": i + 1, "name": name} for i, name in enumerate(self.categories)]
        if self.iou_type == "keypoints":
            for c in categories:
                c["keypoints"] = list(self.keypoint_names)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt = COCO()
            gt.dataset = {"images": self.images, "annotations": self.gt, "categories": categories}
            gt.createIndex()
            if not self.dt:
                return None
            dt = gt.loadRes(self.dt)
            ev = COCOeval(gt, dt, iouType=self.iou_type)
            if self.sigmas is not None:
                ev.params.kpt_oks_sigmas = np.asarray(self.sigmas, dtype=np.float64)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    def compute(self) -> dict[str, float]:
        names = NAMES if self.iou_type == "bbox" else KEYPOINT_NAMES
        if not self.gt:
            raise EmptySplitError(f"no ground-truth object of {', '.join(self.categories)}: AP is undefined")
        ev = self.coco_eval()
        if ev is None:
            return {n: 0.0 for n in names}
        return {n: float(v) for n, v in zip(names, ev.stats, strict=False)}
