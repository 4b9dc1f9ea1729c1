"""A task model: the shared backbone and one task's head. State-dict keys start `backbone.` or `head.`."""

from __future__ import annotations

import torch
from torch import nn

from domains import DatasetInfo
from tasks.backbone import create_backbone
from tasks.base import get_task

# ImageNet statistics: the input normalisation every backbone here expects
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class TaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.register_buffer("mean", MEAN.clone(), persistent=False)
        self.register_buffer("std", STD.clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> the head's dense output [B, C, H, W]."""
        features = self.backbone((images - self.mean) / self.std)
        return self.head(features, images.shape[-2:])


def build_model(backbone: str, task: str, info: DatasetInfo, seed: int, init: str = "scratch") -> TaskModel:
    """A fresh model for `task` on a dataset like `info`; weights drawn from `seed`."""
    torch.manual_seed(seed)
    body = create_backbone(backbone, init)
    return TaskModel(body, get_task(task).build_head(body.feature_info, info))
