"""The standard sample form every dataset yields, and what a dataset declares about itself.

A sample is a dict of tensors:
    image         float32 [3, H, W] in [0, 1]
    segmentation  int64 [H, W], class ids into `DatasetInfo.classes`, 255 = ignore
    depth         float32 [H, W] metres, 0 = invalid
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Sample = dict[str, torch.Tensor]
IGNORE = 255


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    domain: str
    tasks: tuple[str, ...]  # task types it has labels for
    classes: tuple[str, ...]  # semantic label space
    image_size: int
