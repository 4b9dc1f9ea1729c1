"""Which weights move from a checkpoint into a new model, and checkpoints written atomically.

The backbone always moves; a head moves only when asked and when its tensors
have the same names and shapes (same task type and label space). `transfer`
returns the tensors moved and skipped so the job can log them.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


TMP_SUFFIX = ".tmp"


@dataclass
class TransferReport:
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: reason"


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write {state_dict, meta} to `path` via a temporary file and a rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name records who writes it, so a sweep can remove the leftovers of a killed writer
    prefix = f".{path.name}.{socket.gethostname()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"state_dict": model.state_dict(), "meta": meta}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def transfer(model: nn.Module, checkpoint: str | Path, heads: bool = False) -> TransferReport:
    """Copy `checkpoint`'s backbone (and, if `heads`, matching head) tensors into `model`."""
    source = load_checkpoint(checkpoint)["state_dict"]
    target = model.state_dict()
    report = TransferReport()
    update = {}
    for name, tensor in source.items():
        if not (name.startswith("backbone.") or (heads and name.startswith("head."))):
            report.skipped.append(f"{name}: head not transferred")
        elif name not in target:
            report.skipped.append(f"{name}: not in the new model")
        elif target[name].shape != tensor.shape:
            report.skipped.append(f"{name}: shape {tuple(tensor.shape)} != {tuple(target[name].shape)}")
        else:
            update[name] = tensor
            report.moved.append(name)
    model.load_state_dict(update, strict=False)
    return report
