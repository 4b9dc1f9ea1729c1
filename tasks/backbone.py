"""Backbones: any timm model with `features_only`, initialised from scratch or local ImageNet weights.

    create_backbone("test_resnet", init="scratch")  # the tiny default: trains in seconds on a CPU

Nothing is downloaded: `imagenet` reads a state dict from the local cache and
fails with a message naming the file to place when it is absent.
"""

from __future__ import annotations

from torch import nn

from tasks.backbone_names import check_backbone, imagenet_weights_path, missing_weights

INITS = ("scratch", "imagenet")


class WeightsNotFoundError(FileNotFoundError):
    pass


def create_backbone(name: str, init: str = "scratch") -> nn.Module:
    """A timm feature extractor returning the list of its feature maps (see `.feature_info`)."""
    import timm  # imports in seconds: only when a model is built

    check_backbone(name)
    if init == "scratch":
        return timm.create_model(name, pretrained=False, features_only=True)
    if init == "imagenet":
        path = imagenet_weights_path(name)
        if path is None:
            raise WeightsNotFoundError(missing_weights(name))
        return timm.create_model(name, pretrained=True, features_only=True, pretrained_cfg_overlay={"file": str(path)})
    raise ValueError(f"unknown init {init!r}; expected one of: {', '.join(INITS)}")
