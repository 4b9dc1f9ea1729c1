"""timm's model names and local weights, read without importing timm (or torch): what a study's `backbone` and
`init: imagenet` are checked against.

    check_backbone("resnet18")     # the name; an unknown one raises ValueError naming close ones
    imagenet_weights_path("resnet18") or missing_weights("resnet18")   # the local file, or what to place where

The names of the timm version the project pins are listed in `_timm_names.py`,
written by `python -m tasks.backbone_names` (tests/test_tasks.py checks it
against `timm.list_models()`); with another timm version installed, the check
asks timm itself.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import textwrap
from pathlib import Path

LISTING = Path(__file__).with_name("_timm_names.py")


def timm_names() -> frozenset[str]:
    """Every name `timm.list_models()` returns for the installed timm."""
    from tasks import _timm_names

    try:
        installed = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == _timm_names.VERSION:
        return frozenset(_timm_names.NAMES.split())
    import timm

    return frozenset(timm.list_models())


def check_backbone(name: str) -> str:
    """`name` if timm has a model of that name, else ValueError naming close ones."""
    names = timm_names()
    if name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=5) or ["test_resnet", "resnet18"]
        raise ValueError(f"unknown backbone {name!r}: not a timm model name; close ones: {', '.join(close)}")
    return name


def imagenet_weights_path(name: str) -> Path | None:
    """The local file holding `name`'s ImageNet weights (timm's cache under TORCH_HOME), or None: they are never
    downloaded."""
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    for ext in ("safetensors", "pth"):
        path = torch_home / "hub" / "checkpoints" / f"{name}.{ext}"
        if path.is_file():
            return path
    return None


def missing_weights(name: str) -> str:
    """What to do when `name`'s ImageNet weights are not on disk."""
    home = os.environ.get("TORCH_HOME", "~/.cache/torch")
    return (f"ImageNet weights for {name!r} are not in the local cache and are never downloaded: place a timm state "
            f"dict at {home}/hub/checkpoints/{name}.safetensors (or .pth)")  # fmt: skip


def write_listing(path: Path = LISTING) -> None:
    """Write the installed timm's model names to `path` (the listing `timm_names` reads)."""
    import timm

    body = textwrap.fill(" ".join(timm.list_models()), 116, break_long_words=False, break_on_hyphens=False)
    path.write_text(f'"""The model names of timm {timm.__version__} (`timm.list_models()`), written by '
                    f'`python -m tasks.backbone_names`."""\n\nVERSION = "{timm.__version__}"\n'
                    f'NAMES = """\n{body}\n"""\n')  # fmt: skip


if __name__ == "__main__":
    write_listing()
