"""Backbones: any timm model with `features_only`, initialised from scratch or local ImageNet weights.

    create_backbone("test_resnet", init="scratch")  # the tiny default: trains in seconds on a CPU

Nothing is downloaded: `imagenet` reads a state dict from the local cache and
fails with a message naming the file to place when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

INITS = ("scratch", "imagenet")


class WeightsNotFoundError(FileNotFoundError):
    pass


def imagenet_weights_path(name: str) -> Path | None:
    """The local file holding `name`'s ImageNet weights, or None."""
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    for ext in ("safetensors", "pth"):
        path = torch_home / "hub" / "checkpoints" / f"{name}.{ext}"
        if path.is_file():
            return path
    return None


def create_backbone(name: str, init: str = "scratch") -> nn.Module:
    """A timm feature extractor returning the list of its feature maps (see `.feature_info`)."""
    import timm  # imports in seconds: only when a model is built

    if name not in timm.list_models():
        raise ValueError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models())")
    if init == "scratch":
        return timm.create_model(name, pretrained=False, features_only=True)
    if init == "imagenet":
        path = imagenet_weights_path(name)
        if path is None:
            torch_home = os.environ.get("TORCH_HOME", "~/.cache/torch")
            raise WeightsNotFoundError(
                f"ImageNet weights for {name!r} are not in the local cache and are never downloaded: "
                f"place a timm state dict at {torch_home}/hub/checkpoints/{name}.safetensors (or .pth)"
            )
        return timm.create_model(name, pretrained=True, features_only=True, pretrained_cfg_overlay={"file": str(path)})
    raise ValueError(f"unknown init {init!r}; expected one of: {', '.join(INITS)}")
