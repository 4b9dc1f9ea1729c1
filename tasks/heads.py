"""The neck and the heads, built from a backbone's `feature_info`, never from its name.

Every task model is backbone -> neck -> head. The neck is the same FPN for
every task type (torchvision's `FeaturePyramidNetwork` over the backbone's
levels of stride >= 4, plus a max-pooled extra level), so it can move between
task types like the backbone; heads are per task.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import FeatureInfo

NECK_WIDTH = 64


class Neck(nn.Module):
    """FPN over the backbone's levels of stride >= 4 (the stride-2 stem is skipped).

    features (list from a timm `features_only` model) -> OrderedDict
    {"0": [B, W, H/s0, W/s0], "1": ..., "pool": ...}, finest first; every level
    has `out_channels` channels; `strides` lists each level's stride.
    """

    def __init__(self, feature_info: FeatureInfo, width: int = NECK_WIDTH) -> None:
        from torchvision.ops import FeaturePyramidNetwork  # torchvision imports in seconds: only when built
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        strides = feature_info.reduction()
        self.levels = [i for i, s in enumerate(strides) if s >= 4] or list(range(len(strides)))
        chans = feature_info.channels()
        self.fpn = FeaturePyramidNetwork([chans[i] for i in self.levels], width, extra_blocks=LastLevelMaxPool())
        self.out_channels = width
        self.strides = [strides[i] for i in self.levels] + [strides[self.levels[-1]] * 2]

    def forward(self, features: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(n), features[i]) for n, i in enumerate(self.levels)))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DenseHead(nn.Module):
    """Per-pixel prediction from the finest FPN level: a 3x3 conv, a 1x1 predictor, bilinear upsampling.

    Output [B, out_channels, H, W] at the input resolution `size`.
    """

    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        self.smooth = _conv_bn_relu(width, width)
        self.predict = nn.Conv2d(width, out_channels, 1)

    def forward(self, features: OrderedDict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.predict(self.smooth(next(iter(features.values()))))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
