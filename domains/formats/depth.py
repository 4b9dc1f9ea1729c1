"""Depth folders: one file per image with its metric depth (0 = invalid).

    .png   16-bit PNG: metres = value / scale (KITTI: 256, NYU/ScanNet/SUN RGB-D: 1000); 0 = invalid.
           With encoding "disparity" (Cityscapes): disparity = (value - offset) / scale and
           metres = baseline_focal / disparity (baseline [m] x focal length [px]).
    .npy   float32 [H, W] metres; 0, negative or non-finite = invalid.

    depth = read_depth(path, scale=256.0, shape=(h, w))     # float32 [H, W] metres
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from domains.formats.images import DataError, open_png


def read_depth(path: Path, scale: float = 1000.0, shape: tuple[int, int] | None = None, *,
               encoding: str = "depth", offset: float = 0.0, baseline_focal: float | None = None) -> np.ndarray:  # fmt: skip
    """The depth map at `path` in metres, float32 [H, W], 0 = invalid."""
    if path.suffix == ".npy":
        if not path.is_file():
            raise DataError(f"{path}: depth: no such file; expected one per image")
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: depth: unreadable ({e}); expected a .npy array of metres") from None
        if depth.ndim != 2 or depth.dtype.kind != "f":
            raise DataError(f"{path}: depth: a {depth.dtype} array of shape {list(depth.shape)}; "
                            f"expected float metres [H, W]")  # fmt: skip
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    else:
        img = open_png(path, "depth")
        raw = np.asarray(img)
        if raw.ndim != 2 or img.mode in ("L", "P"):
            raise DataError(f"{path}: depth: a {img.mode} image; expected a single-channel 16-bit PNG")
        raw = raw.astype(np.float64)
        valid = raw > 0
        if encoding == "disparity":
            disparity = (raw - offset) / scale
            valid &= disparity > 0
            depth = np.where(valid, baseline_focal / np.where(valid, disparity, 1.0), 0.0)
        else:
            depth = np.where(valid, raw / scale, 0.0)
        depth = depth.astype(np.float32)
    if shape is not None and depth.shape != tuple(shape):
        raise DataError(f"{path}: depth: size {depth.shape[1]}x{depth.shape[0]} differs from its image's "
                        f"{shape[1]}x{shape[0]}; expected the same size")  # fmt: skip
    return depth


def write_depth(path: Path, depth: torch.Tensor | np.ndarray, scale: float = 256.0) -> None:
    """float [H, W] metres (0 = invalid) -> `path`: .npy float32 as is, or a 16-bit PNG of round(metres * scale)."""
    depth = np.asarray(depth, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, depth)
        return
    value = np.clip(np.round(depth.astype(np.float64) * scale), 0, 65535)
    if (depth > 65535 / scale).any():
        raise ValueError(f"{path}: depth up to {depth.max():.1f} m does not fit a 16-bit PNG at scale {scale}")
    Image.fromarray(value.astype(np.uint16)).save(path)
