"""Augmentations shared by every task, applied to batches in the standard form."""

from __future__ import annotations

import torch

from domains.base import DENSE, Sample


def random_hflip(batch: Sample, generator: torch.Generator, p: float = 0.5) -> Sample:
    """Mirror each sample left-right with probability `p` (drawn from `generator`)."""
    flip = torch.rand(batch["image"].shape[0], generator=generator) < p
    if not flip.any():
        return batch
    out = dict(batch)
    for key in DENSE:
        if key in out:
            x = out[key].clone()
            x[flip] = x[flip].flip(-1)
            out[key] = x
    return out
