"""Which weights move from a checkpoint into a new model; writing and reading checkpoints.

    report = transfer(model, "src.pt", head=False, task="depth", label_space=("depth",))
    report.moved, report.skipped      # tensor names; skipped ones as "name: reason"

The backbone always moves; the neck moves when both models have one (every
task model here has the same FPN neck, so it moves across task types); a
head moves only when asked, when the checkpoint's task and label space
(recorded in its meta) equal the new model's, and when its tensors have the
same names and shapes. Checkpoints load with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn


@dataclass
class TransferReport:
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: reason"

    @property
    def head_moved(self) -> bool:
        """Whether any head tensor came from the checkpoint (a fresh head is then not prepared)."""
        return any(name.startswith("head.") for name in self.moved)


def save_checkpoint(model: nn.Module, file: str | Path | BinaryIO, meta: dict[str, Any]) -> str | Path | BinaryIO:
    """Write {state_dict, meta} to `file` (a path or a binary file) and return it. Not atomic by itself:
    checkpoints that other jobs read are written through matrix.store.Storage.save, which is."""
    if isinstance(file, str | Path):
        Path(file).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, file)
    return file


def load_checkpoint(source: str | Path | BinaryIO) -> dict[str, Any]:
    """{state_dict, meta} from a file path or a readable binary file; tensors only (`weights_only=True`)."""
    return torch.load(source, map_location="cpu", weights_only=True)


def transfer(model: nn.Module, checkpoint: str | Path | BinaryIO, head: bool = False, task: str | None = None,
             label_space: tuple[str, ...] | None = None) -> TransferReport:  # fmt: skip
    """Copy `checkpoint`'s backbone and neck (and, if `head` and they match, head) tensors into `model`."""
    loaded = load_checkpoint(checkpoint)
    source, meta = loaded["state_dict"], loaded.get("meta", {})
    target = model.state_dict()
    same_head = (meta.get("task") == task and label_space is not None
                 and tuple(meta.get("label_space", ())) == tuple(label_space))  # fmt: skip
    report = TransferReport()
    update = {}
    for name, tensor in source.items():
        part = name.split(".", 1)[0]
        if part not in ("backbone", "neck", "head"):
            report.skipped.append(f"{name}: not a backbone, neck or head tensor")
        elif part == "head" and not head:
            report.skipped.append(f"{name}: head not transferred (the study does not ask)")
        elif part == "head" and not same_head:
            report.skipped.append(f"{name}: head not transferred (task or label space differ)")
        elif name not in target:
            report.skipped.append(f"{name}: not in the new model")
        elif target[name].shape != tensor.shape:
            report.skipped.append(f"{name}: shape {tuple(tensor.shape)} != {tuple(target[name].shape)}")
        else:
            update[name] = tensor
            report.moved.append(name)
    model.load_state_dict(update, strict=False)
    return report
