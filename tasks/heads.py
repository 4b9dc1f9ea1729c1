"""Dense prediction heads built from a backbone's `feature_info`, never from its name."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import FeatureInfo


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """FPN-style decoder: lateral 1x1 convs, top-down sum, a 3x3 conv, then a 1x1 predictor.

    Input: the backbone's feature list (strides from `feature_info`); output
    [B, out_channels, H, W] at the input resolution, upsampled bilinearly from
    the finest level used (stride >= 4; the stride-2 stem is skipped).
    """

    def __init__(self, feature_info: FeatureInfo, out_channels: int, width: int = 64) -> None:
        super().__init__()
        strides = feature_info.reduction()
        self.levels = [i for i, s in enumerate(strides) if s >= 4] or list(range(len(strides)))
        chans = feature_info.channels()
        self.lateral = nn.ModuleList(nn.Conv2d(chans[i], width, 1) for i in self.levels)
        self.smooth = _conv_bn_relu(width, width)
        self.predict = nn.Conv2d(width, out_channels, 1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = None
        for lateral, i in reversed(list(zip(self.lateral, self.levels, strict=True))):
            y = lateral(features[i])
            x = y if x is None else y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
        x = self.predict(self.smooth(x))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
