"""A task model: the shared backbone, the FPN neck and one task's head.

State-dict keys start `backbone.`, `neck.` or `head.`: what `tasks.transfer`
moves between models, whatever the task type.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains import DatasetInfo
from tasks.backbone import INITS, create_backbone
from tasks.base import get_task
from tasks.heads import Neck

# ImageNet statistics: the input normalisation every backbone here expects
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class TaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, neck: Neck, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.register_buffer("mean", MEAN.clone(), persistent=False)
        self.register_buffer("std", STD.clone(), persistent=False)
        if hasattr(head, "attach"):  # a torchvision detector: it normalises, then calls our features
            head.attach(self.features)

    def features(self, normalized: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Normalised images [B, 3, H, W] -> FPN levels {"0": [B, C, H/4, W/4], ..., "pool": ...}."""
        return self.neck(self.backbone(normalized))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Dense tasks: images [B, 3, H, W] in [0, 1] -> the head's output [B, C, H, W]."""
        return self.head(self.features((images - self.mean) / self.std), images.shape[-2:])


def build_model(backbone: str, task: str, info: DatasetInfo, seed: int, init: str = "scratch",
                options: dict[str, Any] | None = None) -> TaskModel:  # fmt: skip
    """A fresh model for `task` on a dataset like `info`; weights drawn from `seed` (on the CPU, whatever
    torch's global generator holds, which it leaves unchanged).

    `init` is "scratch", "imagenet" (local weights only, see tasks.backbone),
    or the path of a checkpoint of ours, whose backbone and neck are loaded
    (see tasks.transfer); `options` are the study's model choices (e.g.
    detector, depth_loss).
    """
    from_checkpoint = init not in INITS
    if from_checkpoint and not Path(init).is_file():
        raise FileNotFoundError(f"init {init!r}: not 'scratch', 'imagenet', nor a checkpoint file that exists")
    with torch.random.fork_rng(devices=[]):  # modules draw their weights from torch's global generator:
        torch.default_generator.manual_seed(seed)  # seeded here, and left as it was before when done
        body = create_backbone(backbone, "scratch" if from_checkpoint else init)
        neck = Neck(body.feature_info)
        model = TaskModel(body, neck, get_task(task, options).build_head(neck, info))
    if from_checkpoint:
        from tasks.transfer import transfer

        report = transfer(model, init)
        wanted = [k for k in model.state_dict() if k.startswith("backbone.")]
        missing = set(wanted) - set(report.moved)
        if missing:
            raise ValueError(f"init {init!r}: not a {backbone!r} backbone: {len(missing)} of its {len(wanted)} "
                             f"tensors are missing or have another shape in this checkpoint")  # fmt: skip
    return model
