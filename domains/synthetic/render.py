"""Rasterising procedural scenes: a z-buffered canvas, shape masks and textures.

Every surface is painted with its own depth; a pixel keeps the nearest surface,
so objects occlude one another correctly whatever order they are drawn in, and
the image, the semantic mask and the depth map always agree.
"""

from __future__ import annotations

import numpy as np

FAR = 1.0e6  # depth of surfaces at infinity (sky, open water): invalid in the depth map


class Canvas:
    """An RGB image, a class map and a z-buffer of one scene, [H, W] each."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.cls = np.full((height, width), 255, np.int64)  # 255 = ignore until painted
        self.z = np.full((height, width), np.inf, np.float32)

    def paint(self, mask: np.ndarray, color: np.ndarray, cls: int, depth: float | np.ndarray) -> None:
        """Paint `color` ([3] or [H, W, 3]) with class `cls` where `mask` is set and nearer."""
        depth = np.broadcast_to(np.asarray(depth, np.float32), mask.shape)
        hit = mask & (depth < self.z)
        if not hit.any():
            return
        color = np.asarray(color, np.float32)
        self.rgb[hit] = color[hit] if color.ndim == 3 else color
        self.cls[hit] = cls
        self.z[hit] = depth[hit]

    def depth_map(self) -> np.ndarray:
        """Metric depth [H, W]; 0 where nothing finite was painted (sky, open water)."""
        return np.where(self.z < FAR * 0.5, self.z, 0.0).astype(np.float32)

    # -- shapes: boolean masks [H, W] ------------------------------------------------
    def rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return (self.xx >= x0) & (self.xx < x1) & (self.yy >= y0) & (self.yy < y1)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
        dx, dy = self.xx - cx, self.yy - cy
        c, s = np.cos(angle), np.sin(angle)
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (u / max(rx, 0.5)) ** 2 + (v / max(ry, 0.5)) ** 2 <= 1.0

    def rotated_rect(self, cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
        dx, dy = self.xx - cx, self.yy - cy
        c, s = np.cos(angle), np.sin(angle)
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (np.abs(u) <= max(w, 1.0) / 2) & (np.abs(v) <= max(h, 1.0) / 2)

    def band(self, x: float, y: float, angle: float, width: float) -> np.ndarray:
        """An infinite straight strip through (x, y) at `angle` (a road seen from above)."""
        dist = -(self.xx - x) * np.sin(angle) + (self.yy - y) * np.cos(angle)
        return np.abs(dist) <= width / 2

    def triangle_up(self, cx: float, base_y: float, half_w: float, height: float) -> np.ndarray:
        """An upward triangle standing on `base_y` (a conifer, a coral spike)."""
        t = (base_y - self.yy) / max(height, 1.0)  # 0 at the base, 1 at the tip
        return (t >= 0) & (t <= 1) & (np.abs(self.xx - cx) <= half_w * (1 - t))


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random texture in [0, 1], [H, W]: a random grid of `cell` px, bilinearly upsampled."""
    gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    y = np.arange(h, dtype=np.float32) / cell
    x = np.arange(w, dtype=np.float32) / cell
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def textured(
    rng: np.random.Generator, h: int, w: int, base: np.ndarray, amount: float, cell: float
) -> np.ndarray:
    """A colour `base` [3] modulated by two octaves of value noise, [H, W, 3]."""
    if amount <= 0:
        return np.broadcast_to(np.asarray(base, np.float32), (h, w, 3)).copy()
    n = 0.65 * value_noise(rng, h, w, cell) + 0.35 * value_noise(rng, h, w, max(cell / 4, 1.0))
    shade = 1.0 + amount * (n - 0.5) * 2.0
    return np.clip(np.asarray(base, np.float32)[None, None, :] * shade[..., None], 0.0, 1.0)
