"""Semantic segmentation with an mmseg segmentor (FCN, SegFormer's head, ...) chosen by config name.

    task = get_task("segmentation", {"backend": "openmmlab", "mm_segmentor": "segformer_mit-b0_8xb2-160k_ade20k-512x512"})

`tasks.segmentation.Segmentation` delegates here for `backend: openmmlab`.
The segmentor is the config's EncoderDecoder (decode and auxiliary heads,
their losses) over our shared backbone (see `backbone.py`): each head's
`in_channels` come from the backbone's `feature_info` at the levels it reads
(`in_index`, counted like the config's backbone outputs), `num_classes` from
the dataset's classes, 255 is ignored (cross-entropy averaged over labelled
pixels, as natively), inference is on the whole image.
Batches become normalised inputs and `SegDataSample`s with `gt_sem_seg`;
predictions come back as logits [B, C, H, W] at the input size, scored by our
`MeanIoU` like the native head's.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from domains import IGNORE, DatasetInfo
from tasks.base import Batch
from tasks.heads import Neck
from tasks.openmmlab.backbone import Levels, MMHead, build, load_model_config, loss_sum, walk

HEADS = ("decode_head", "auxiliary_head")


def segmentor_config(name: str, levels: Levels, num_classes: int) -> dict[str, Any]:
    """mmseg config `name`'s model over the backbone `levels`, sized for them and for `num_classes` classes."""
    cfg, read = load_model_config("mmseg", name, levels)
    neck = cfg.get("neck")
    with_neck = isinstance(neck, dict) and isinstance(neck.get("in_channels"), list | tuple)
    if with_neck:  # e.g. semantic FPN: the heads read the neck's outputs, whose widths stay the config's
        neck["in_channels"] = list(read.channels)

    def size(head: dict[str, Any]) -> dict[str, Any]:
        # cross-entropy averaged over the labelled pixels only, like the native head's F.cross_entropy
        head = walk(head, lambda d: {**d, "avg_non_ignore": True} if d.get("type") == "CrossEntropyLoss" else d)
        head = {**head, "num_classes": num_classes, "ignore_index": IGNORE}
        if not with_neck:
            index = head.get("in_index", -1)
            if isinstance(index, list | tuple):
                head["in_channels"] = [read.channels[i] for i in index]
            else:
                head["in_channels"] = read.channels[index]
        return head

    for key in HEADS:
        if isinstance(cfg.get(key), dict):
            cfg[key] = size(cfg[key])
        elif isinstance(cfg.get(key), list):  # several auxiliary heads
            cfg[key] = [size(h) for h in cfg[key]]
    cfg["test_cfg"] = {"mode": "whole"}  # small images: no sliding window
    return cfg


def data_samples(batch: Batch, with_targets: bool) -> list[SegDataSample]:
    """One SegDataSample per image: image metas (no resize, no padding) and, for training, gt_sem_seg [1, H, W]."""
    height, width = batch["image"].shape[-2:]
    meta = {"img_shape": (height, width), "ori_shape": (height, width), "pad_shape": (height, width)}
    out = []
    for i in range(len(batch["image"])):
        sample = SegDataSample(metainfo=meta)
        if with_targets:
            sample.gt_sem_seg = PixelData(data=batch["segmentation"][i][None])  # 255 = ignore, as mmseg's default
        out.append(sample)
    return out


class MMSegmentation:
    """What `tasks.segmentation.Segmentation` delegates to: head, loss, predictions and label space."""

    def __init__(self, config: str) -> None:
        self.config = config

    def build_head(self, neck: Neck, info: DatasetInfo) -> MMHead:
        """The mmseg segmentor over the backbone levels our `neck` reads, for `info`'s classes.

        Our neck stays in the task model (`build_model` makes it) but no mm
        segmentor uses it: it carries what it was given (e.g. the init's
        neck) unchanged, as no gradient reaches it.
        """
        return build(MODELS, segmentor_config(self.config, Levels.of_neck(neck), len(info.classes)), self.config)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = (batch["image"] - model.mean) / model.std
        return loss_sum(model.head(model.backbone, inputs, data_samples(batch, True), "loss"))

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Logits [B, C, H, W] at the input size (what `MeanIoU` takes the argmax of)."""
        inputs = (batch["image"] - model.mean) / model.std
        results = model.head(model.backbone, inputs, data_samples(batch, False), "predict")
        return torch.stack([r.seg_logits.data for r in results])

    def label_space(self, info: DatasetInfo) -> tuple[str, ...]:
        return ("backend=openmmlab", f"mm_segmentor={self.config}", *info.classes)
