"""Depth folders: one file per image with its metric depth (0 = invalid).

    .png   16-bit PNG: metres = value / scale (KITTI: 256, NYU/ScanNet/SUN RGB-D: 1000); 0 = invalid.
           With encoding "disparity" (Cityscapes): disparity = (value - offset) / scale and
           metres = baseline_focal / disparity (baseline [m] x focal length [px]).
    .npy   float32 [H, W] metres; 0, negative or non-finite = invalid.

    depth = read_depth(path, scale=256.0, shape=(h, w))     # float32 [H, W] metres

    stats = DepthStats()                   # a split's depth range, in bounded memory
    stats.add(depth)                       # per sample
    stats.describe()                       # "median 2.33 m, 1st-99th percentile 0.704-3.96 m, 95% of pixels valid"
    stats.implausible()                    # "median 2,330 m; 90% of valid pixels above 1,000 m", or None

Real scenes lie between PLAUSIBLE[0] and PLAUSIBLE[1] metres (a close-up at 1 cm,
an aerial view at a kilometre); when most valid pixels fall outside, the scale
(mm read as m, cm as mm, ...) is wrong, not the scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from domains.formats.images import DataError, open_png

PLAUSIBLE = (0.01, 1000.0)  # metres; a split whose valid pixels lie mostly outside has a wrong scale
_BINS_PER_DECADE = 200  # log-spaced histogram: percentiles to within 0.6 %
_LOG_RANGE = (-9, 12)  # 1 nm .. 1e12 m; values beyond count in the end bins


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
        raise ValueError(f"{path}: depth up to {depth.max():.1f} m does not fit a 16-bit PNG at scale {scale:g}")
    Image.fromarray(value.astype(np.uint16)).save(path)


def metres(value: float) -> str:
    """A depth for people: three significant digits, thousands separated ("3,410,000", "2.25", "0.00225")."""
    if value >= 1000:
        digits = int(np.floor(np.log10(value))) - 2
        return f"{round(value, -digits):,.0f}"
    return f"{float(f'{value:.3g}'):g}" if value > 0 else "0"


class DepthStats:
    """The depth range of many maps (float metres, 0 = invalid) in bounded memory: a log-spaced histogram of
    the valid pixels (percentiles to within 0.6 %) and exact counts of pixels outside PLAUSIBLE."""

    def __init__(self) -> None:
        lo, hi = _LOG_RANGE
        self.counts = np.zeros((hi - lo) * _BINS_PER_DECADE, np.int64)
        self.pixels = self.valid = self.below = self.above = 0

    def add(self, depth: torch.Tensor | np.ndarray) -> None:
        d = np.asarray(depth, np.float64).ravel()
        self.pixels += d.size
        d = d[np.isfinite(d) & (d > 0)]
        self.valid += d.size
        self.below += int((d < PLAUSIBLE[0]).sum())
        self.above += int((d > PLAUSIBLE[1]).sum())
        index = np.floor((np.log10(d) - _LOG_RANGE[0]) * _BINS_PER_DECADE).astype(np.int64)
        self.counts += np.bincount(np.clip(index, 0, len(self.counts) - 1), minlength=len(self.counts))

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the valid pixels, in metres (the geometric centre of its bin)."""
        if not self.valid:
            raise ValueError("no valid depth pixels")
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.valid, side="left"))
        return float(10 ** (_LOG_RANGE[0] + (min(i, len(self.counts) - 1) + 0.5) / _BINS_PER_DECADE))

    def describe(self) -> str:
        if not self.valid:
            return f"no valid pixels (of {self.pixels:,})"
        lo, mid, hi = (self.percentile(q) for q in (1, 50, 99))
        return (f"median {metres(mid)} m, 1st-99th percentile {metres(lo)}-{metres(hi)} m, "
                f"{100 * self.valid / self.pixels:.0f}% of pixels valid")  # fmt: skip

    def implausible(self) -> str | None:
        """What is wrong when most (over half) of the valid pixels lie outside PLAUSIBLE; else None."""
        for count, side, bound in ((self.above, "above", PLAUSIBLE[1]), (self.below, "below", PLAUSIBLE[0])):
            if self.valid and count > self.valid / 2:
                return (f"median {metres(self.percentile(50))} m; {100 * count / self.valid:.0f}% of valid pixels "
                        f"{side} {metres(bound)} m")  # fmt: skip
        return None
