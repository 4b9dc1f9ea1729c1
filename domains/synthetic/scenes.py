"""Procedural image domains: the geometry and the look of each.

A domain is a distinct regime of geometry and appearance: how the camera sees
the world (ground-level perspective with a horizon, or top-down), what objects
appear and at what scale, and how the image is rendered (texture, colour cast,
haze with distance, light, sensor noise, or flat colours). One scene gives the
image, a semantic mask over the shared vocabulary `VOCAB` and metric depth.

Add a domain with `@DOMAINS.register(name)` on a function returning a `Domain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from domains.registry import Registry
from domains.synthetic.render import FAR, Canvas, textured, value_noise

VOCAB: tuple[str, ...] = (
    "sky", "road", "sidewalk", "terrain", "building", "vegetation", "vehicle", "person",
    "water", "seabed", "rock", "coral", "fish", "floor", "wall", "ceiling", "furniture",
)  # fmt: skip
ID = {name: i for i, name in enumerate(VOCAB)}


@dataclass(frozen=True)
class Look:
    """How a domain renders: texture strength, colour cast, haze, light and noise."""

    texture: float = 0.35  # relative shading amplitude of surface textures (0 = flat)
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain
    haze_color: tuple[float, float, float] = (0.7, 0.75, 0.8)
    haze_beta: float = 0.0  # attenuation per metre: t = exp(-beta * depth)
    light: tuple[float, float] = (0.8, 1.15)  # global brightness range
    noise: float = 0.02  # sensor noise sigma
    jitter: float = 0.12  # per-scene palette variation


def blend_looks(a: Look, b: Look, fraction: float) -> Look:
    """The look `fraction` of the way from `a` to `b` (0 = a, 1 = b), field by field."""

    def mix(x, y):
        if isinstance(x, tuple):
            return tuple(mix(u, v) for u, v in zip(x, y, strict=True))
        return (1 - fraction) * x + fraction * y

    return Look(**{f: mix(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__})


@dataclass(frozen=True)
class Domain:
    name: str
    classes: tuple[str, ...]  # label space, a subset of VOCAB in VOCAB order
    compose: Callable[[Canvas, np.random.Generator, "Palette"], None]
    look: Look


DOMAINS: Registry[Callable[[], Domain]] = Registry("domain")


class Palette:
    """Per-scene jittered colours and textured fills for one canvas."""

    def __init__(self, cv: Canvas, rng: np.random.Generator, look: Look) -> None:
        self.cv, self.rng, self.look = cv, rng, look

    def color(self, rgb: tuple[float, float, float]) -> np.ndarray:
        c = np.asarray(rgb, np.float32) * (1.0 + self.rng.normal(0.0, self.look.jitter, 3))
        return np.clip(c, 0.0, 1.0).astype(np.float32)

    def fill(self, rgb: tuple[float, float, float], cell: float = 8.0) -> np.ndarray:
        return textured(self.rng, self.cv.h, self.cv.w, self.color(rgb), self.look.texture, cell)


def _ground_plane(cv: Canvas, horizon: float, focal: float, cam_height: float) -> np.ndarray:
    """Depth [H, W] of a flat ground seen from `cam_height` metres; FAR above the horizon."""
    below = cv.yy - horizon
    return np.where(below > 0.5, focal * cam_height / np.maximum(below, 0.5), FAR).astype(np.float32)


def _upright(cv: Canvas, vx: float, horizon: float, focal: float, cam_height: float,
             x_m: float, z_m: float, width_m: float, height_m: float, lift_m: float = 0.0):
    """Pixel box (x0, y0, x1, y1) of a camera-facing upright rectangle standing on the ground."""
    s = focal / z_m
    bottom = horizon + s * (cam_height - lift_m)
    return (vx + s * (x_m - width_m / 2), bottom - s * height_m, vx + s * (x_m + width_m / 2), bottom)


# -- driving (and its flat-rendered twin, synthetic) ------------------------------------------


def _street(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    focal, cam_h = w * rng.uniform(0.8, 1.1), 1.5
    hor, vx = h * rng.uniform(0.35, 0.5), w * rng.uniform(0.4, 0.6)
    top, bottom = pal.color((0.45, 0.65, 0.95)), pal.color((0.85, 0.9, 0.95))
    t = np.clip(cv.yy / max(hor, 1.0), 0, 1)[..., None]
    cv.paint(np.ones((h, w), bool), top * (1 - t) + bottom * t, ID["sky"], FAR)

    z = _ground_plane(cv, hor, focal, cam_h)
    ground = z < FAR
    lateral = (cv.xx - vx) * np.minimum(z, 1e4) / focal  # metres right of the camera
    road_half = rng.uniform(3.0, 6.0)
    road = ground & (np.abs(lateral) < road_half)
    walk = ground & ~road & (np.abs(lateral) < road_half + 2.5)
    road_rgb = pal.fill((0.35, 0.35, 0.37), 4)
    lane = road & (np.abs(lateral) < 0.15) & ((z % 6.0) < 3.0)
    road_rgb[lane] = (0.9, 0.9, 0.85)
    cv.paint(ground & ~road & ~walk, pal.fill((0.35, 0.55, 0.25), 6), ID["terrain"], z)
    cv.paint(road, road_rgb, ID["road"], z)
    cv.paint(walk, pal.fill((0.65, 0.62, 0.6), 3), ID["sidewalk"], z)

    def upright(x_m, z_m, w_m, h_m):
        return cv.rect(*_upright(cv, vx, hor, focal, cam_h, x_m, z_m, w_m, h_m))

    for _ in range(rng.integers(2, 7)):  # buildings beyond the sidewalks
        side = rng.choice([-1.0, 1.0])
        wid, z_b = rng.uniform(8, 20), rng.uniform(10, 60)
        x_b = side * (road_half + 3.0 + rng.uniform(0, 4) + wid / 2)
        facade = pal.fill((0.6, 0.5, 0.45), 5)
        period = focal * 3.0 / z_b  # a window every 3 m
        win = ((cv.xx % max(period, 2.0)) < period * 0.45) & ((cv.yy % max(period, 2.0)) < period * 0.5)
        facade[win] *= 0.45
        cv.paint(upright(x_b, z_b, wid, rng.uniform(6, 25)), facade, ID["building"], z_b)
    for _ in range(rng.integers(1, 6)):  # trees: trunk and canopy
        x_t = rng.choice([-1.0, 1.0]) * (road_half + rng.uniform(1.5, 3.0))
        z_t, crown = rng.uniform(5, 40), rng.uniform(1.5, 3.0)
        x0, y0, x1, y1 = _upright(cv, vx, hor, focal, cam_h, x_t, z_t, 0.35, 2.5)
        cv.paint(cv.rect(x0, y0, x1, y1), pal.color((0.35, 0.25, 0.15)), ID["vegetation"], z_t)
        s = focal / z_t
        canopy = cv.ellipse((x0 + x1) / 2, y0 - s * crown * 0.6, s * crown, s * crown * 1.1)
        cv.paint(canopy, pal.fill((0.2, 0.5, 0.2), 3), ID["vegetation"], z_t)
    for _ in range(rng.integers(1, 6)):  # vehicles on the road
        x_v, z_v = rng.uniform(-road_half + 1, road_half - 1), rng.uniform(4, 45)
        x0, y0, x1, y1 = _upright(cv, vx, hor, focal, cam_h, x_v, z_v, 1.8, 1.5)
        body = np.broadcast_to(pal.color(tuple(rng.uniform(0.1, 0.9, 3))), (h, w, 3)).copy()
        body[cv.yy < y0 + (y1 - y0) * 0.4] *= 0.35  # dark windows
        cv.paint(cv.rect(x0, y0, x1, y1), body, ID["vehicle"], z_v)
    for _ in range(rng.integers(0, 5)):  # pedestrians on the sidewalk
        x_p = rng.choice([-1.0, 1.0]) * (road_half + rng.uniform(0.5, 2.0))
        z_p = rng.uniform(3, 25)
        x0, y0, x1, y1 = _upright(cv, vx, hor, focal, cam_h, x_p, z_p, 0.5, 1.75)
        cx, hh = (x0 + x1) / 2, y1 - y0
        person = cv.ellipse(cx, y0 + hh * 0.6, (x1 - x0) / 2, hh * 0.4) | cv.ellipse(cx, y0 + hh * 0.1, (x1 - x0) / 3, hh * 0.1)
        cv.paint(person, pal.color(tuple(rng.uniform(0.1, 0.8, 3))), ID["person"], z_p)


_STREET_CLASSES = ("sky", "road", "sidewalk", "terrain", "building", "vegetation", "vehicle", "person")


@DOMAINS.register("driving")
def driving() -> Domain:
    return Domain("driving", _STREET_CLASSES, _street, Look(haze_beta=0.004, noise=0.02))


@DOMAINS.register("synthetic")
def synthetic() -> Domain:
    """Driving geometry, rendered flat: no texture, no noise, saturated, uniform light."""
    look = Look(texture=0.0, cast=(1.1, 1.0, 1.1), light=(1.0, 1.0), noise=0.0, jitter=0.02)
    return Domain("synthetic", _STREET_CLASSES, _street, look)


# -- indoor -------------------------------------------------------------------------------------


def _room(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    focal, cam_h, ceil = w * rng.uniform(0.6, 0.9), 1.3, rng.uniform(2.5, 3.0)
    hor, vx = h * rng.uniform(0.4, 0.55), w * rng.uniform(0.35, 0.65)
    back, half = rng.uniform(4, 8), rng.uniform(2, 4)
    everywhere = np.ones((h, w), bool)
    wall = pal.fill((0.8, 0.75, 0.65), 10)
    cv.paint(everywhere, wall, ID["wall"], back)  # back wall
    dx = np.abs(cv.xx - vx)
    cv.paint(dx > 0.5, wall * 0.85, ID["wall"], focal * half / np.maximum(dx, 0.5))  # side walls
    floor_z = _ground_plane(cv, hor, focal, cam_h)
    cv.paint(floor_z < FAR, pal.fill((0.55, 0.4, 0.25), 3), ID["floor"], floor_z)
    above = hor - cv.yy
    ceil_z = np.where(above > 0.5, focal * (ceil - cam_h) / np.maximum(above, 0.5), FAR)
    cv.paint(ceil_z < FAR, pal.fill((0.92, 0.92, 0.9), 12), ID["ceiling"], ceil_z)
    for _ in range(rng.integers(2, 6)):  # tables, sofas, cabinets against the floor
        z_f = rng.uniform(1.5, back - 0.3)
        wid, hei = rng.uniform(0.6, 2.0), rng.uniform(0.4, 1.6)
        x_f = rng.uniform(-half + wid / 2, half - wid / 2)
        box = _upright(cv, vx, hor, focal, cam_h, x_f, z_f, wid, hei)
        cv.paint(cv.rect(*box), pal.fill(tuple(rng.uniform(0.2, 0.8, 3)), 4), ID["furniture"], z_f)
    if rng.random() < 0.5:
        z_p, x_p = rng.uniform(1.5, back - 0.5), rng.uniform(-half + 0.5, half - 0.5)
        x0, y0, x1, y1 = _upright(cv, vx, hor, focal, cam_h, x_p, z_p, 0.5, 1.7)
        cv.paint(cv.ellipse((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2),
                 pal.color((0.3, 0.3, 0.5)), ID["person"], z_p)


@DOMAINS.register("indoor")
def indoor() -> Domain:
    look = Look(texture=0.25, cast=(1.1, 0.97, 0.82), light=(0.55, 1.0), noise=0.04)
    return Domain("indoor", ("floor", "wall", "ceiling", "furniture", "person"), _room, look)


# -- underwater ---------------------------------------------------------------------------------


def _reef(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    focal, cam_h = w * rng.uniform(0.7, 1.0), rng.uniform(2.0, 4.0)
    hor, vx = h * rng.uniform(0.2, 0.4), w * rng.uniform(0.4, 0.6)
    cv.paint(np.ones((h, w), bool), pal.fill((0.2, 0.45, 0.6), 16), ID["water"], FAR)
    z = _ground_plane(cv, hor, focal, cam_h)
    cv.paint(z < FAR, pal.fill((0.75, 0.7, 0.5), 3), ID["seabed"], z)
    for _ in range(rng.integers(2, 7)):  # rocks: half-buried ellipses
        z_r, size = rng.uniform(2, 20), rng.uniform(0.4, 2.0)
        x_r = rng.uniform(-1, 1) * z_r * w / (2 * focal)
        s = focal / z_r
        cx, base = vx + s * x_r, hor + s * cam_h
        cv.paint(cv.ellipse(cx, base, s * size, s * size * 0.6), pal.fill((0.4, 0.38, 0.35), 3), ID["rock"], z_r)
    for _ in range(rng.integers(1, 6)):  # coral: clusters of spikes
        z_c, x_c = rng.uniform(2, 15), rng.uniform(-3, 3)
        s = focal / z_c
        cx, base = vx + s * x_c, hor + s * cam_h
        coral = np.zeros((h, w), bool)
        for _ in range(rng.integers(2, 5)):
            coral |= cv.triangle_up(cx + s * rng.uniform(-0.4, 0.4), base, s * 0.15, s * rng.uniform(0.5, 1.2))
        cv.paint(coral, pal.color(tuple(rng.uniform([0.6, 0.2, 0.3], [1.0, 0.6, 0.7]))), ID["coral"], z_c)
    for _ in range(rng.integers(2, 10)):  # fish in the water column
        z_f, lift = rng.uniform(1.5, 12), rng.uniform(0.3, 3.0)
        x_f = rng.uniform(-1, 1) * z_f * w / (2 * focal)
        s = focal / z_f
        cx, cy = vx + s * x_f, hor + s * (cam_h - lift)
        length = s * rng.uniform(0.2, 0.6)
        cv.paint(cv.ellipse(cx, cy, length, length * 0.4, rng.uniform(-0.3, 0.3)),
                 pal.color(tuple(rng.uniform([0.6, 0.4, 0.0], [1.0, 0.9, 0.4]))), ID["fish"], z_f)


@DOMAINS.register("underwater")
def underwater() -> Domain:
    look = Look(texture=0.3, cast=(0.55, 0.9, 1.05), haze_color=(0.1, 0.4, 0.5),
                haze_beta=0.15, light=(0.6, 1.0), noise=0.03)
    return Domain("underwater", ("water", "seabed", "rock", "coral", "fish"), _reef, look)


# -- aerial -------------------------------------------------------------------------------------


def _overhead(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    alt = rng.uniform(60, 150)
    s = w / rng.uniform(60, 120)  # pixels per metre: the image covers 60 to 120 m
    everywhere = np.ones((h, w), bool)
    field = pal.fill((0.4, 0.5, 0.25), 12)
    field2 = pal.fill((0.55, 0.45, 0.3), 12)
    patch = value_noise(rng, h, w, 16) > 0.5
    cv.paint(everywhere, np.where(patch[..., None], field2, field), ID["terrain"], alt)
    if rng.random() < 0.4:
        cv.paint(cv.ellipse(*rng.uniform(0, w, 2), *(s * rng.uniform(8, 25, 2)), rng.uniform(0, np.pi)),
                 pal.fill((0.15, 0.3, 0.4), 10), ID["water"], alt - 0.01)
    angles = []
    for _ in range(rng.integers(1, 3)):
        a = rng.uniform(0, np.pi)
        angles.append(a)
        cv.paint(cv.band(*rng.uniform(0, w, 2), a, s * rng.uniform(6, 10)),
                 pal.fill((0.4, 0.4, 0.42), 4), ID["road"], alt - 0.02)
    sun = rng.uniform(0, 2 * np.pi)
    for _ in range(rng.integers(2, 8)):  # buildings, with shadows cast on the ground
        cx, cy = rng.uniform(0, w, 2)
        bw, bl, bh, ang = s * rng.uniform(8, 25), s * rng.uniform(8, 25), rng.uniform(4, 30), rng.uniform(0, np.pi)
        shadow = cv.rotated_rect(cx + np.cos(sun) * s * bh * 0.4, cy + np.sin(sun) * s * bh * 0.4, bw, bl, ang)
        cv.rgb[shadow & (cv.z > alt - 0.5)] *= 0.55
        cv.paint(cv.rotated_rect(cx, cy, bw, bl, ang), pal.fill(tuple(rng.uniform(0.35, 0.8, 3)), 6),
                 ID["building"], alt - bh)
    for _ in range(rng.integers(2, 12)):  # trees
        cv.paint(cv.ellipse(*rng.uniform(0, w, 2), *(s * rng.uniform(2, 5),) * 2),
                 pal.fill((0.15, 0.4, 0.15), 2), ID["vegetation"], alt - rng.uniform(5, 12))
    for _ in range(rng.integers(0, 8)):  # vehicles
        cv.paint(cv.rotated_rect(*rng.uniform(0, w, 2), s * 4.5, s * 2.0, rng.choice(angles)),
                 pal.color(tuple(rng.uniform(0.1, 0.9, 3))), ID["vehicle"], alt - 1.5)


@DOMAINS.register("aerial")
def aerial() -> Domain:
    look = Look(texture=0.4, cast=(1.0, 1.0, 0.95), haze_color=(0.75, 0.8, 0.85),
                haze_beta=0.003, light=(0.85, 1.2), noise=0.02)
    return Domain("aerial", ("road", "terrain", "building", "vegetation", "vehicle", "water"), _overhead, look)


def render(domain: Domain, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: image [H, W, 3] in [0, 1], class ids over VOCAB [H, W] (255 = ignore), depth [H, W]."""
    cv = Canvas(size, size)
    domain.compose(cv, rng, Palette(cv, rng, domain.look))
    look = domain.look
    rgb = cv.rgb
    if look.haze_beta > 0:  # attenuation towards the haze colour with distance
        t = np.exp(-look.haze_beta * np.minimum(cv.z, 1e3))[..., None]
        rgb = rgb * t + np.asarray(look.haze_color, np.float32) * (1 - t)
    rgb = rgb * np.asarray(look.cast, np.float32) * rng.uniform(*look.light)
    if look.noise > 0:
        rgb = rgb + rng.normal(0.0, look.noise, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), cv.cls, cv.depth_map()
