"""Rasterising procedural scenes: a z-buffered canvas with instances, shape masks, textures and keypoints.

Every surface is painted with its own depth; a pixel keeps the nearest surface,
so objects occlude one another correctly whatever order they are drawn in, and
the image, the semantic mask, the instance map and the depth map always agree.

Coordinates are continuous pixels: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1) and is sampled at its centre (j + 0.5, i + 0.5), so a
box `xyxy` and a keypoint `(x, y)` mean the same thing after a flip
(x -> W - x), a rescale (x -> f x) or a crop (x -> x - left).

Shapes are `Window`s, masks over their bounding box only, so painting a small
object costs its own area, not the whole frame's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FAR = 1.0e6  # depth of surfaces at infinity (sky, open water): invalid in the depth map
KEYPOINT_TOLERANCE = 1e-3  # relative depth within which a keypoint counts as lying on the surface seen


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (yy, xx), [H, W] float32 each, read-only (shared between canvases)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


@dataclass(frozen=True)
class Window:
    """A shape: boolean `mask` [h, w] whose top-left pixel sits at (y0, x0) on the canvas."""

    y0: int
    x0: int
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


class Texture:
    """A colour `base` [3] shaded by two octaves of value noise; drawn lazily over a window.

    The noise seed is fixed when the texture is made, so the texture is a
    deterministic function of the scene's random stream whatever is painted.
    """

    def __init__(self, base: np.ndarray, amount: float, cell: float, seed: int) -> None:
        self.base, self.amount, self.cell, self.seed = np.asarray(base, np.float32), amount, cell, seed

    def at(self, h: int, w: int) -> np.ndarray:
        """The texture over an [h, w] window: [h, w, 3] float32."""
        return textured(np.random.default_rng(self.seed), h, w, self.base, self.amount, self.cell)


class Canvas:
    """One scene being painted: RGB [H, W, 3], VOCAB class [H, W], z-buffer [H, W], instance id [H, W].

    Instance ids start at 1 (0 = no instance); `objects[i - 1]` is the VOCAB
    class of instance i and `points[i]` its keypoints [K, 3] as (x, y, depth).
    `allowed` (None = all) names the object classes this scene may draw.
    """

    def __init__(self, height: int, width: int, allowed: frozenset[str] | None = None) -> None:
        self.h, self.w = height, width
        self.yy, self.xx = _grid(height, width)
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.cls = np.full((height, width), 255, np.int64)  # 255 = ignore until painted
        self.z = np.full((height, width), np.inf, np.float32)
        self.inst = np.zeros((height, width), np.int32)
        self.objects: list[int] = []
        self.points: dict[int, np.ndarray] = {}
        self.allowed = allowed

    # -- painting ---------------------------------------------------------------------------
    def draws(self, thing: str) -> bool:
        """Whether objects of class `thing` belong in this scene (the dataset's class subset)."""
        return self.allowed is None or thing in self.allowed

    def new_instance(self, cls: int) -> int:
        """A fresh instance id for an object of VOCAB class `cls`."""
        self.objects.append(cls)
        return len(self.objects)

    def set_keypoints(self, inst: int, points: np.ndarray) -> None:
        """Keypoints of `inst` projected from its geometry: [K, 3] as (x, y, depth of the surface they lie on)."""
        self.points[inst] = np.asarray(points, np.float32)

    def paint(self, shape: Window | np.ndarray, color, cls: int, depth, inst: int = 0) -> None:
        """Paint `color` with class `cls` (and instance `inst`) where `shape` is set and nearer than before.

        shape: a Window, or a full-frame bool mask [H, W]. color: [3], a Texture,
        or an array [h, w, 3] over the window or [H, W, 3] over the frame.
        depth: a scalar, or [H, W] over the frame, or [h, w] over the window.
        """
        if isinstance(shape, Window):
            ys, xs = shape.slices
            mask = shape.mask
        else:
            ys, xs, mask = slice(None), slice(None), shape
        if mask.size == 0:
            return
        zr = self.z[ys, xs]  # views: writes go to the canvas
        d = np.asarray(depth, np.float32)
        if d.ndim == 2 and d.shape != mask.shape:
            d = d[ys, xs]
        hit = mask & (d < zr)
        if not hit.any():
            return
        if isinstance(color, Texture):
            c = color.at(*mask.shape)
        else:
            c = np.asarray(color, np.float32)
            if c.ndim == 3 and c.shape[:2] != mask.shape:
                c = c[ys, xs]
        self.rgb[ys, xs][hit] = c[hit] if c.ndim == 3 else c
        self.cls[ys, xs][hit] = cls
        zr[hit] = d[hit] if d.ndim == 2 else d
        self.inst[ys, xs][hit] = inst

    def defocus(self, sigma: float) -> None:
        """Blur what has been painted so far (a background out of the focal plane); labels stay sharp."""
        if sigma > 0:
            from scipy.ndimage import gaussian_filter  # here: reading a config imports the domains, not scipy

            self.rgb = gaussian_filter(self.rgb, sigma=(sigma, sigma, 0), mode="nearest").astype(np.float32)

    def depth_map(self) -> np.ndarray:
        """Metric depth [H, W]; 0 where nothing finite was painted (sky, open water)."""
        return np.where(self.z < FAR * 0.5, self.z, 0.0).astype(np.float32)

    # -- instances and keypoints ------------------------------------------------------------
    def instances(self, min_pixels: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objects with at least `min_pixels` visible pixels: (ids [N] int, classes [N] VOCAB ids, boxes [N, 4]).

        A box is the extent of the instance's visible pixels in xyxy pixel
        coordinates (x1, y1 exclusive), as COCO boxes are.
        """
        n = len(self.objects)
        flat = self.inst.ravel()
        counts = np.bincount(flat, minlength=n + 1)
        ids = np.nonzero(counts[1:] >= min_pixels)[0] + 1
        if len(ids) == 0:
            return ids, np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        on = np.nonzero(flat)[0]
        owner = flat[on]
        ys, xs = on // self.w, on % self.w
        x0 = np.full(n + 1, self.w, np.int64)
        y0 = np.full(n + 1, self.h, np.int64)
        x1 = np.full(n + 1, -1, np.int64)
        y1 = np.full(n + 1, -1, np.int64)
        np.minimum.at(x0, owner, xs)
        np.minimum.at(y0, owner, ys)
        np.maximum.at(x1, owner, xs)
        np.maximum.at(y1, owner, ys)
        boxes = np.stack([x0[ids], y0[ids], x1[ids] + 1, y1[ids] + 1], 1).astype(np.float32)  # [N, 4]
        classes = np.asarray(self.objects, np.int64)[ids - 1]
        return ids, classes, boxes

    def keypoints(self, inst: int, k: int) -> np.ndarray:
        """Keypoints of `inst` as [K, 3] (x, y, COCO visibility); zeros if it has none.

        Visibility 0 outside the image; 1 inside the image but hidden: a
        nearer surface (another object, or the object's own body) covers the
        keypoint's pixel; 2 where the keypoint's pixel shows this instance at
        the keypoint's own depth (within KEYPOINT_TOLERANCE). A keypoint whose
        pixel shows something farther (its part is thinner than a pixel there)
        snaps to the nearest of the 3 x 3 pixels around it that shows it, at
        that pixel's centre, and is 1 if none does.
        """
        out = np.zeros((k, 3), np.float32)
        pts = self.points.get(inst)
        if pts is None or len(pts) != k:
            return out
        x, y, d = pts[:, 0].copy(), pts[:, 1].copy(), pts[:, 2]
        inside = (x >= 0) & (x < self.w) & (y >= 0) & (y < self.h)
        col = np.clip(np.floor(x), 0, self.w - 1).astype(np.int64)
        row = np.clip(np.floor(y), 0, self.h - 1).astype(np.int64)
        z = self.z[row, col]
        on_surface = z >= d * (1 - KEYPOINT_TOLERANCE)  # nothing nearer than the keypoint covers its pixel
        shows = (self.inst[row, col] == inst) & on_surface
        for j in np.nonzero(inside & on_surface & ~shows)[0]:  # rasterisation misses: snap within a pixel
            r0, r1 = max(row[j] - 1, 0), min(row[j] + 2, self.h)
            c0, c1 = max(col[j] - 1, 0), min(col[j] + 2, self.w)
            ok = (self.inst[r0:r1, c0:c1] == inst) & (self.z[r0:r1, c0:c1] >= d[j] * (1 - KEYPOINT_TOLERANCE))
            if ok.any():
                rr, cc = np.nonzero(ok)
                best = np.argmin((cc + c0 + 0.5 - x[j]) ** 2 + (rr + r0 + 0.5 - y[j]) ** 2)
                x[j], y[j], shows[j] = cc[best] + c0 + 0.5, rr[best] + r0 + 0.5, True
        out[:, 0], out[:, 1] = x, y
        out[:, 2] = np.where(inside, np.where(shows, 2.0, 1.0), 0.0)
        return out

    # -- shapes ---------------------------------------------------------------------------
    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        """Rows and columns of the pixels whose centres may fall in [x0, x1] x [y0, y1], clipped to the frame."""
        c0 = min(max(int(np.floor(x0)), 0), self.w)
        c1 = min(max(int(np.ceil(x1)) + 1, 0), self.w)
        r0 = min(max(int(np.floor(y0)), 0), self.h)
        r1 = min(max(int(np.ceil(y1)) + 1, 0), self.h)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def _local(self, x0: float, y0: float, x1: float, y1: float):
        ys, xs = self.window(x0, y0, x1, y1)
        return ys, xs, self.yy[ys, xs], self.xx[ys, xs]

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Window:
        ys, xs, yy, xx = self._local(x0, y0, x1, y1)
        return Window(ys.start, xs.start, (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> Window:
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        c, s = np.cos(angle), np.sin(angle)
        ex, ey = np.hypot(rx * c, ry * s), np.hypot(rx * s, ry * c)  # half extents of the rotated ellipse
        ys, xs, yy, xx = self._local(cx - ex, cy - ey, cx + ex, cy + ey)
        dx, dy = xx - cx, yy - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        return Window(ys.start, xs.start, (u / rx) ** 2 + (v / ry) ** 2 <= 1.0)

    def rotated_rect(self, cx: float, cy: float, w: float, h: float, angle: float) -> Window:
        w, h = max(w, 1.0), max(h, 1.0)
        c, s = np.cos(angle), np.sin(angle)
        ex, ey = (abs(w * c) + abs(h * s)) / 2, (abs(w * s) + abs(h * c)) / 2
        ys, xs, yy, xx = self._local(cx - ex, cy - ey, cx + ex, cy + ey)
        dx, dy = xx - cx, yy - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        return Window(ys.start, xs.start, (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2))

    def segment(self, x0: float, y0: float, x1: float, y1: float, width: float) -> Window:
        """A thick line with round ends (a limb, a stem): points within width/2 of the segment."""
        r = max(width, 1.5) / 2
        ys, xs, yy, xx = self._local(min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
        return Window(ys.start, xs.start, (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= r * r)

    def triangle(self, p0, p1, p2) -> Window:
        """The filled triangle with corners p0, p1, p2 (each (x, y))."""
        pts = np.asarray([p0, p1, p2], np.float32)  # [3, 2]
        ys, xs, yy, xx = self._local(*pts.min(0), *pts.max(0))
        sides = []
        for (ax, ay), (bx, by) in ((pts[0], pts[1]), (pts[1], pts[2]), (pts[2], pts[0])):
            sides.append((bx - ax) * (yy - ay) - (by - ay) * (xx - ax))  # edge functions, [h, w] each
        inside = ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | ((sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
        return Window(ys.start, xs.start, inside)

    def triangle_up(self, cx: float, base_y: float, half_w: float, height: float) -> Window:
        """An upward triangle standing on `base_y` (a conifer, a coral spike)."""
        return self.triangle((cx - half_w, base_y), (cx + half_w, base_y), (cx, base_y - max(height, 1.0)))

    def band(self, x: float, y: float, angle: float, width: float) -> np.ndarray:
        """An infinite straight strip through (x, y) at `angle` (a road seen from above), full frame [H, W]."""
        dist = -(self.xx - x) * np.sin(angle) + (self.yy - y) * np.cos(angle)
        return np.abs(dist) <= width / 2


@lru_cache(maxsize=2048)
def _upsampler(n: int, cell: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Smoothstep interpolation from a random grid of `cell` px to n pixels (read-only, cached).

    Returns (i [n], f [n], g): pixel k lies between grid nodes i[k] and
    i[k] + 1 with weight f[k] on the second, of g = ceil(n / cell) + 2 nodes.
    """
    t = np.arange(n, dtype=np.float32) / cell
    i = np.floor(t).astype(np.int64)
    f = t - i
    f = (f * f * (3 - 2 * f)).astype(np.float32)  # smoothstep
    i.flags.writeable = f.flags.writeable = False
    return i, f, int(np.ceil(n / cell)) + 2


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random texture in [0, 1], [H, W]: a random grid of `cell` px, smoothly interpolated.

    The interpolation is separable (rows, then columns) with cached weights.
    """
    iy, fy, gh = _upsampler(h, float(cell))
    ix, fx, gw = _upsampler(w, float(cell))
    grid = rng.random((gh, gw), dtype=np.float32)
    fy = fy[:, None]
    rows = grid[iy] * (1 - fy) + grid[iy + 1] * fy  # [H, gw]
    return rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx  # [H, W]


def textured(
    rng: np.random.Generator, h: int, w: int, base: np.ndarray, amount: float, cell: float
) -> np.ndarray:
    """A colour `base` [3] modulated by two octaves of value noise, [H, W, 3]."""
    if amount <= 0 or h == 0 or w == 0:
        return np.broadcast_to(np.asarray(base, np.float32), (h, w, 3)).copy()
    n = 0.65 * value_noise(rng, h, w, cell) + 0.35 * value_noise(rng, h, w, max(cell / 4, 1.0))
    shade = 1.0 + amount * (n - 0.5) * 2.0
    return np.clip(np.asarray(base, np.float32)[None, None, :] * shade[..., None], 0.0, 1.0)
