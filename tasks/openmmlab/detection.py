"""Object detection with an mmdet detector (RetinaNet, FCOS, Faster R-CNN, ...) chosen by config name.

    task = get_task("detection", {"backend": "openmmlab", "mm_detector": "faster-rcnn_r50_fpn_1x_coco"})

`tasks.detection.Detection` delegates here for `backend: openmmlab`. The
detector is the config's (neck, heads, assigners, losses, NMS) over our
shared backbone (see `backbone.py`); its neck's `in_channels` come from the
backbone's `feature_info`, its anchor, prior and RoI strides from the
backbone's reductions, `num_classes` from the dataset's things. Batches in
our form become mm inputs (normalised images) and `DetDataSample`s with
`gt_instances`; predictions come back as our per-image dicts (boxes xyxy in
pixels, labels in our label space, scores), scored by our `CocoAP` like the
native detectors'.
"""

from __future__ import annotations

from typing import Any

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import nn

from domains import DatasetInfo
from tasks.base import Batch
from tasks.heads import Neck
from tasks.openmmlab.backbone import Levels, MMHead, build, load_model_config, loss_sum, walk


def detector_config(name: str, levels: Levels, num_classes: int) -> dict[str, Any]:
    """mmdet config `name`'s model over the backbone `levels`, sized for them and for `num_classes` things.

    The neck reads the backbone's deepest levels (as many as the config's
    neck took); every `strides` / `featmap_strides` list in the heads becomes
    the strides of the neck's outputs (its levels from `start_level`, then
    each extra level twice the last); every `num_classes` becomes ours.
    """
    cfg, read = load_model_config("mmdet", name, levels)
    strides = list(read.strides)
    neck = cfg.get("neck")
    if isinstance(neck, dict):
        if isinstance(neck.get("in_channels"), list | tuple):
            neck["in_channels"] = list(read.channels)
        else:  # a single-level neck reads the deepest level
            neck["in_channels"], strides = read.channels[-1], strides[-1:]
        start, end = neck.get("start_level", 0), neck.get("end_level", -1)
        used = strides[start:] if end == -1 else strides[start : end + 1]
        extra = max(0, neck.get("num_outs", len(used)) - len(used))
        strides = used + [used[-1] * 2 ** (k + 1) for k in range(extra)]

    def size(d: dict[str, Any]) -> dict[str, Any]:
        if "num_classes" in d:
            d = {**d, "num_classes": num_classes}
        for key in ("strides", "featmap_strides"):  # anchor/prior generators, point heads, RoI extractors
            if isinstance(d.get(key), list | tuple):
                if len(d[key]) > len(strides):
                    raise ValueError(f"mmdet config {name!r}: {key} has {len(d[key])} levels; the neck over "
                                     f"this backbone gives {len(strides)}")  # fmt: skip
                d = {**d, key: strides[: len(d[key])]}
        return d

    heads = {k: walk(v, size) for k, v in cfg.items() if k not in ("backbone", "neck", "data_preprocessor")}
    return {**cfg, **heads}


def data_samples(batch: Batch, with_targets: bool) -> list[DetDataSample]:
    """One DetDataSample per image: image metas (no resize, no padding) and, for training, gt_instances.

    Degenerate boxes (no width or height) are dropped, as for the native detectors.
    """
    height, width = batch["image"].shape[-2:]
    meta = {"img_shape": (height, width), "ori_shape": (height, width), "pad_shape": (height, width),
            "batch_input_shape": (height, width), "scale_factor": (1.0, 1.0)}  # fmt: skip
    out = []
    for i in range(len(batch["image"])):
        sample = DetDataSample(metainfo=meta)
        if with_targets:
            boxes = batch["boxes"][i]
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            sample.gt_instances = InstanceData(bboxes=boxes[keep], labels=batch["labels"][i][keep])
        out.append(sample)
    return out


class MMDetection:
    """What `tasks.detection.Detection` delegates to: head, loss, predictions and label space."""

    def __init__(self, config: str) -> None:
        self.config = config

    def build_head(self, neck: Neck, info: DatasetInfo) -> MMHead:
        """The mmdet detector over the backbone levels our `neck` reads, for `info`'s things.

        Our neck stays in the task model (`build_model` makes it) but the
        detector uses the config's own neck: ours carries what it was given
        (e.g. the init's neck) unchanged, as no gradient reaches it.
        """
        if not info.things:
            raise ValueError(f"dataset {info.name!r} has no object classes (things) to detect")
        return build(MODELS, detector_config(self.config, Levels.of_neck(neck), len(info.things)), self.config)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = (batch["image"] - model.mean) / model.std
        return loss_sum(model.head(model.backbone, inputs, data_samples(batch, True), "loss"))

    def predict(self, model: nn.Module, batch: Batch) -> list[dict[str, torch.Tensor]]:
        """Per image {boxes [M, 4] xyxy pixels, labels [M] ids into `info.things`, scores [M]}."""
        inputs = (batch["image"] - model.mean) / model.std
        results = model.head(model.backbone, inputs, data_samples(batch, False), "predict")
        return [{"boxes": r.pred_instances.bboxes, "labels": r.pred_instances.labels, "scores": r.pred_instances.scores}
                for r in results]  # fmt: skip

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        return ("backend=openmmlab", f"mm_detector={self.config}", *info.things)
