"""Procedural image domains: the geometry and the look of each.

A domain is a distinct regime of geometry and appearance: how the camera sees
the world (ground-level perspective with a horizon, top-down, or near), what
objects appear and at what scale and density, and how the image is rendered
(texture, colour cast, haze with distance, light, sensor noise, defocus, or
flat colours). One scene gives the image, a semantic mask over the shared
vocabulary `VOCAB`, metric depth, and every object ("thing") as an instance
with its box and, for the domain's keypoint class, its keypoints.

Add a domain with `@DOMAINS.register(name)` on a function returning a `Domain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from domains.base import KeypointSchema
from domains.registry import Registry
from domains.synthetic.render import FAR, Canvas, Texture, Window, value_noise

VOCAB: tuple[str, ...] = (
    "sky", "road", "sidewalk", "terrain", "building", "vegetation", "vehicle", "person",
    "water", "seabed", "rock", "coral", "fish", "floor", "wall", "ceiling", "furniture",
    "animal", "bottle", "flower", "insect",
)  # fmt: skip  (append only: ids are stable)
ID = {name: i for i, name in enumerate(VOCAB)}
MIN_PIXELS = 6  # objects with fewer visible pixels are not instances

# -- keypoint schemas: one keypoint-bearing class per domain ----------------------------------

PERSON = KeypointSchema(
    "person",
    ("head", "left_shoulder", "right_shoulder", "left_hand", "right_hand", "left_hip", "right_hip",
     "left_foot", "right_foot"),
    skeleton=((0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (1, 5), (2, 6), (5, 6), (5, 7), (6, 8)),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8)),
    sigmas=(0.026, 0.079, 0.079, 0.062, 0.062, 0.107, 0.107, 0.089, 0.089),  # COCO's nose/shoulder/wrist/hip/ankle
)  # fmt: skip
VEHICLE_REAR = KeypointSchema(  # a vehicle seen from behind (driving, synthetic)
    "vehicle",
    ("left_roof", "right_roof", "left_light", "right_light", "left_wheel", "right_wheel"),
    skeleton=((0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5)),
    flip_pairs=((0, 1), (2, 3), (4, 5)),
    sigmas=(0.07, 0.07, 0.05, 0.05, 0.06, 0.06),
)
VEHICLE_TOP = KeypointSchema(  # a vehicle seen from above (aerial)
    "vehicle",
    ("front_left", "front_right", "rear_left", "rear_right"),
    skeleton=((0, 1), (1, 3), (3, 2), (2, 0)),
    flip_pairs=((0, 1), (2, 3)),
    sigmas=(0.05, 0.05, 0.05, 0.05),
)
FISH = KeypointSchema(  # a fish seen from the side: it shows one pectoral fin, the other is behind its body
    "fish",
    ("snout", "dorsal_fin", "tail", "belly", "left_fin", "right_fin"),
    skeleton=((0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (0, 5)),
    flip_pairs=((4, 5),),
    sigmas=(0.04, 0.06, 0.06, 0.06, 0.05, 0.05),
)
INSECT = KeypointSchema(  # a butterfly seen from above (close-up)
    "insect",
    ("head", "abdomen", "left_forewing", "right_forewing", "left_hindwing", "right_hindwing"),
    skeleton=((0, 1), (0, 2), (0, 3), (1, 4), (1, 5)),
    flip_pairs=((2, 3), (4, 5)),
    sigmas=(0.04, 0.05, 0.07, 0.07, 0.07, 0.07),
)


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
    cast_jitter: float = 0.0  # per-scene random white balance: sigma of a per-channel gain


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
    things: tuple[str, ...] = ()  # classes drawn as object instances, a subset of `classes`
    keypoints: KeypointSchema | None = None  # the keypoints of one of `things`


DOMAINS: Registry[Callable[[], Domain]] = Registry("domain")


class Palette:
    """Per-scene jittered colours and textured fills for one canvas."""

    def __init__(self, cv: Canvas, rng: np.random.Generator, look: Look) -> None:
        self.cv, self.rng, self.look = cv, rng, look

    def color(self, rgb) -> np.ndarray:
        c = np.asarray(rgb, np.float32) * (1.0 + self.rng.normal(0.0, self.look.jitter, 3))
        return np.clip(c, 0.0, 1.0).astype(np.float32)

    def fill(self, rgb, cell: float = 8.0) -> Texture:
        """A textured fill, drawn over whatever window it is painted into."""
        return Texture(self.color(rgb), self.look.texture, cell, int(self.rng.integers(2**63)))

    def frame(self, rgb, cell: float = 8.0) -> np.ndarray:
        """A textured fill over the whole frame, [H, W, 3]."""
        return self.fill(rgb, cell).at(self.cv.h, self.cv.w)


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


def _sky(cv: Canvas, pal: Palette, horizon: float) -> None:
    top, bottom = pal.color((0.45, 0.65, 0.95)), pal.color((0.85, 0.9, 0.95))
    t = np.clip(cv.yy / max(horizon, 1.0), 0, 1)[..., None]
    cv.paint(np.ones((cv.h, cv.w), bool), top * (1 - t) + bottom * t, ID["sky"], FAR)


def _count(cv: Canvas, rng: np.random.Generator, thing: str, low: int, high: int) -> int:
    """How many objects of `thing` to draw: uniform in [low, high), 0 if the scene may not draw it."""
    n = int(rng.integers(low, high))
    return n if cv.draws(thing) else 0


# -- objects: each an instance, painted part by part, with keypoints from its own geometry ---------


def _person(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, feet_y: float, height: float,
            z: float) -> None:
    """A standing person facing the camera, feet at `feet_y`, `height` px tall, at depth `z` (PERSON keypoints)."""
    i = cv.new_instance(ID["person"])
    hh, top = height, feet_y - height
    skin, shirt = pal.color((0.8, 0.6, 0.45)), pal.color(rng.uniform(0.1, 0.9, 3))
    legs = pal.color(rng.uniform(0.05, 0.6, 3))
    near = z * (1 - 2e-4)  # arms in front of the torso
    head = (cx, top + 0.075 * hh)
    l_sh, r_sh = (cx + 0.11 * hh, top + 0.2 * hh), (cx - 0.11 * hh, top + 0.2 * hh)  # its left is the image right
    l_hip, r_hip = (cx + 0.065 * hh, top + 0.52 * hh), (cx - 0.065 * hh, top + 0.52 * hh)
    spread = rng.uniform(0.0, 0.1, 2) * hh
    l_ft, r_ft = (l_hip[0] + spread[0], top + 0.97 * hh), (r_hip[0] - spread[1], top + 0.97 * hh)
    arm, ang = 0.32 * hh, rng.uniform(0.1, 2.6, 2)  # arm angles out from hanging down (> 1.6: raised)
    l_hd = (l_sh[0] + arm * np.sin(ang[0]), l_sh[1] + arm * np.cos(ang[0]))
    r_hd = (r_sh[0] - arm * np.sin(ang[1]), r_sh[1] + arm * np.cos(ang[1]))
    for hip, foot in ((l_hip, l_ft), (r_hip, r_ft)):
        cv.paint(cv.segment(*hip, *foot, 0.08 * hh), legs, ID["person"], z, i)
    cv.paint(cv.ellipse(cx, top + 0.35 * hh, 0.14 * hh, 0.19 * hh), shirt, ID["person"], z, i)
    for shoulder, hand in ((l_sh, l_hd), (r_sh, r_hd)):
        cv.paint(cv.segment(*shoulder, *hand, 0.065 * hh), shirt * 0.85, ID["person"], near, i)
    cv.paint(cv.ellipse(*head, 0.06 * hh, 0.075 * hh), skin, ID["person"], z, i)
    pts = [(*head, z), (*l_sh, near), (*r_sh, near), (*l_hd, near), (*r_hd, near),
           (*l_hip, z), (*r_hip, z), (*l_ft, z), (*r_ft, z)]  # fmt: skip
    cv.set_keypoints(i, pts)


def _vehicle_rear(cv: Canvas, pal: Palette, rng: np.random.Generator, box, z: float) -> None:
    """A vehicle seen from behind filling pixel `box` at depth `z` (VEHICLE_REAR keypoints)."""
    i, v = cv.new_instance(ID["vehicle"]), ID["vehicle"]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    body = pal.color(rng.uniform(0.1, 0.9, 3))
    front, behind = z * (1 - 2e-4), z * (1 + 2e-4)
    cv.paint(cv.rect(x0, y0, x1, y1 - 0.12 * bh), body, v, z, i)
    cv.paint(cv.rect(x0 + 0.1 * bw, y0 + 0.1 * bh, x1 - 0.1 * bw, y0 + 0.42 * bh), body * 0.3, v, front, i)
    pts = [(x0 + 0.05 * bw, y0 + 0.05 * bh, z), (x1 - 0.05 * bw, y0 + 0.05 * bh, z)]
    lights, wheels = [], []
    for x in (x0 + 0.16 * bw, x1 - 0.16 * bw):  # seen from behind, its left is the image left
        cv.paint(cv.rect(x - 0.09 * bw, y0 + 0.5 * bh, x + 0.09 * bw, y0 + 0.62 * bh), (0.85, 0.1, 0.1), v, front, i)
        cv.paint(cv.rect(x - 0.11 * bw, y1 - 0.2 * bh, x + 0.11 * bw, y1), (0.06, 0.06, 0.06), v, behind, i)
        lights.append((x, y0 + 0.56 * bh, front))
        wheels.append((x, y1 - 0.06 * bh, behind))
    cv.set_keypoints(i, pts + lights + wheels)


def _vehicle_top(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, cy: float, length: float,
                 width: float, heading: float, z: float) -> None:
    """A vehicle seen from above, centred at (cx, cy), heading `heading` radians in the image (VEHICLE_TOP)."""
    i, v = cv.new_instance(ID["vehicle"]), ID["vehicle"]
    f = np.array([np.cos(heading), np.sin(heading)])  # forward, in image coordinates (y down)
    left = np.array([f[1], -f[0]])  # seen from above, the vehicle's left
    c = np.array([cx, cy])
    body = pal.color(rng.uniform(0.1, 0.9, 3))
    cv.paint(cv.rotated_rect(cx, cy, length, width, heading), body, v, z, i)
    ws = c + 0.18 * length * f
    cv.paint(cv.rotated_rect(*ws, 0.16 * length, 0.8 * width, heading), body * 0.3, v, z * (1 - 2e-4), i)
    pts = [(*(c + a * 0.38 * length * f + b * 0.36 * width * left), z) for a in (1, -1) for b in (1, -1)]
    cv.set_keypoints(i, pts)


def _fish(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, cy: float, length: float, z: float,
          facing: float, tilt: float) -> None:
    """A fish seen from the side, `length` px long, facing right (`facing` 1) or left (-1) (FISH keypoints).

    A fish facing right shows its right side: its right pectoral fin lies on
    the body towards the camera, its left one behind the body (occluded, 1).
    """
    i, k = cv.new_instance(ID["fish"]), ID["fish"]
    L = length
    u = np.array([facing * np.cos(tilt), np.sin(tilt)])  # head direction
    dn = np.array([-u[1], u[0]]) if facing > 0 else np.array([u[1], -u[0]])  # towards the belly
    c = np.array([cx, cy])
    angle = float(np.arctan2(u[1], u[0]))
    skin = pal.color(rng.uniform([0.6, 0.4, 0.0], [1.0, 0.9, 0.4]))
    front, behind = z * (1 - 2e-3), z * (1 + 3e-3)
    cv.paint(cv.ellipse(cx, cy, 0.5 * L, 0.19 * L, angle), skin, k, z, i)
    tail = (c - 0.42 * L * u, c - 0.72 * L * u - 0.2 * L * dn, c - 0.72 * L * u + 0.2 * L * dn)
    cv.paint(cv.triangle(*tail), skin * 0.8, k, z, i)
    dorsal = (c - 0.15 * L * dn - 0.14 * L * u, c - 0.15 * L * dn + 0.12 * L * u, c - 0.36 * L * dn - 0.12 * L * u)
    cv.paint(cv.triangle(*dorsal), skin * 0.7, k, z, i)
    near_fin = c + 0.18 * L * u + 0.06 * L * dn
    cv.paint(cv.ellipse(*near_fin, 0.1 * L, 0.045 * L, angle + facing * 0.6), skin * 0.6, k, front, i)
    far_base = c + 0.16 * L * u + 0.1 * L * dn
    cv.paint(cv.ellipse(*(far_base + 0.1 * L * dn), 0.04 * L, 0.1 * L, angle), skin * 0.5, k, behind, i)
    cv.paint(cv.ellipse(*(c + 0.3 * L * u - 0.05 * L * dn), 0.03 * L, 0.03 * L), (0.05, 0.05, 0.05), k, z * (1 - 5e-4), i)
    near, far = (near_fin, front), (far_base, behind)
    left, right = (far, near) if facing > 0 else (near, far)
    pts = [(*(c + 0.42 * L * u), z), (*np.mean(dorsal, 0), z), (*np.mean(tail, 0), z),
           (*(c + 0.12 * L * dn - 0.05 * L * u), z), (*left[0], left[1]), (*right[0], right[1])]  # fmt: skip
    cv.set_keypoints(i, pts)


def _insect(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, cy: float, size: float,
            heading: float, z: float) -> None:
    """A butterfly seen from above, `size` px long, head towards `heading` (INSECT keypoints)."""
    i, k = cv.new_instance(ID["insect"]), ID["insect"]
    f = np.array([np.cos(heading), np.sin(heading)])
    left = np.array([f[1], -f[0]])  # seen from above, its left
    c, S = np.array([cx, cy]), size
    wing, spot = pal.color(rng.uniform(0.2, 1.0, 3)), pal.color(rng.uniform(0.0, 1.0, 3))
    under = z * (1 + 1e-3)  # wings lie under the body, seen from above
    tips = {}
    for name, side in (("left", left), ("right", -left)):
        for part, centre, axis, rx, ry, reach in (
            ("forewing", c + 0.1 * S * f + 0.24 * S * side, 0.45 * f + side, 0.25 * S, 0.13 * S, 0.7),
            ("hindwing", c - 0.15 * S * f + 0.17 * S * side, -0.6 * f + side, 0.18 * S, 0.11 * S, 0.6),
        ):
            axis = axis / np.linalg.norm(axis)
            angle = float(np.arctan2(axis[1], axis[0]))
            cv.paint(cv.ellipse(*centre, rx, ry, angle), wing, k, under, i)
            cv.paint(cv.ellipse(*(centre + 0.3 * rx * axis), 0.3 * rx, 0.35 * ry, angle), spot, k, under * (1 - 1e-4), i)
            tips[f"{name}_{part}"] = centre + reach * rx * axis
    dark = (0.08, 0.07, 0.06)
    cv.paint(cv.ellipse(*(c - 0.04 * S * f), 0.38 * S, 0.07 * S, heading), dark, k, z, i)
    cv.paint(cv.ellipse(*(c + 0.32 * S * f), 0.07 * S, 0.07 * S), dark, k, z, i)
    pts = [(*(c + 0.32 * S * f), z), (*(c - 0.36 * S * f), z)]
    pts += [(*tips[n], under) for n in INSECT.names[2:]]
    cv.set_keypoints(i, pts)


def _flower(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, cy: float, r: float, z: float) -> None:
    """A flower head of radius `r` px on its stem, at depth `z` (no keypoints)."""
    i, k = cv.new_instance(ID["flower"]), ID["flower"]
    cv.paint(cv.segment(cx, cy, cx + rng.uniform(-1, 1) * r, cy + 4 * r, 0.12 * r), pal.color((0.25, 0.5, 0.2)),
             k, z * (1 + 1e-3), i)  # fmt: skip
    petal = pal.fill(rng.uniform([0.6, 0.1, 0.3], [1.0, 0.9, 1.0]), 3)
    n, phase = int(rng.integers(5, 9)), rng.uniform(0, np.pi)
    for a in phase + 2 * np.pi * np.arange(n) / n:
        d = np.array([np.cos(a), np.sin(a)])
        cv.paint(cv.ellipse(cx + 0.55 * r * d[0], cy + 0.55 * r * d[1], 0.5 * r, 0.2 * r, a), petal, k, z, i)
    cv.paint(cv.ellipse(cx, cy, 0.25 * r, 0.25 * r), pal.fill((0.85, 0.65, 0.1), 2), k, z * (1 - 1e-3), i)


def _animal(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, feet_y: float, length: float,
            z: float) -> None:
    """A four-legged animal (a dog) seen from the side, `length` px long, standing at `feet_y` (no keypoints)."""
    i, k = cv.new_instance(ID["animal"]), ID["animal"]
    fur = pal.fill(rng.uniform([0.3, 0.2, 0.1], [0.9, 0.8, 0.6]), 2)
    face = rng.choice([-1.0, 1.0])
    L = length
    body_y = feet_y - 0.55 * L
    for dx in (-0.32, -0.22, 0.22, 0.32):
        cv.paint(cv.segment(cx + dx * L, body_y, cx + dx * L, feet_y, 0.1 * L), fur, k, z * (1 + 1e-4), i)
    cv.paint(cv.ellipse(cx, body_y, 0.45 * L, 0.18 * L), fur, k, z, i)
    cv.paint(cv.ellipse(cx + face * 0.48 * L, body_y - 0.22 * L, 0.15 * L, 0.13 * L), fur, k, z, i)
    cv.paint(cv.segment(cx - face * 0.42 * L, body_y - 0.05 * L, cx - face * 0.6 * L, body_y - 0.3 * L, 0.06 * L),
             fur, k, z, i)  # fmt: skip


def _bottle(cv: Canvas, pal: Palette, rng: np.random.Generator, cx: float, base_y: float, height: float,
            z: float) -> None:
    """A bottle standing on `base_y` (no keypoints)."""
    i, k = cv.new_instance(ID["bottle"]), ID["bottle"]
    glass = pal.color(rng.uniform([0.1, 0.3, 0.1], [0.6, 0.9, 0.7]))
    w = 0.32 * height
    cv.paint(cv.rect(cx - w / 2, base_y - 0.65 * height, cx + w / 2, base_y), glass, k, z, i)
    cv.paint(cv.rect(cx - w / 5, base_y - height, cx + w / 5, base_y - 0.6 * height), glass * 0.8, k, z, i)
    cv.paint(cv.rect(cx - w / 2, base_y - 0.45 * height, cx + w / 2, base_y - 0.25 * height),
             pal.color((0.9, 0.9, 0.85)), k, z * (1 - 1e-4), i)  # fmt: skip


# -- driving (and its flat-rendered twin, synthetic) ------------------------------------------


def _street(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    focal, cam_h = w * rng.uniform(0.8, 1.1), 1.5
    hor, vx = h * rng.uniform(0.35, 0.5), w * rng.uniform(0.4, 0.6)
    _sky(cv, pal, hor)
    z = _ground_plane(cv, hor, focal, cam_h)
    ground = z < FAR
    lateral = (cv.xx - vx) * np.minimum(z, 1e4) / focal  # metres right of the camera
    road_half = rng.uniform(3.0, 6.0)
    road = ground & (np.abs(lateral) < road_half)
    walk = ground & ~road & (np.abs(lateral) < road_half + 2.5)
    road_rgb = pal.frame((0.35, 0.35, 0.37), 4)
    lane = road & (np.abs(lateral) < 0.15) & ((z % 6.0) < 3.0)
    road_rgb[lane] = (0.9, 0.9, 0.85)
    cv.paint(ground & ~road & ~walk, pal.fill((0.35, 0.55, 0.25), 6), ID["terrain"], z)
    cv.paint(road, road_rgb, ID["road"], z)
    cv.paint(walk, pal.fill((0.65, 0.62, 0.6), 3), ID["sidewalk"], z)

    def box(x_m, z_m, w_m, h_m):
        return _upright(cv, vx, hor, focal, cam_h, x_m, z_m, w_m, h_m)

    for _ in range(rng.integers(2, 7)):  # buildings beyond the sidewalks
        side = rng.choice([-1.0, 1.0])
        wid, z_b = rng.uniform(8, 20), rng.uniform(10, 60)
        x_b = side * (road_half + 3.0 + rng.uniform(0, 4) + wid / 2)
        shape = cv.rect(*box(x_b, z_b, wid, rng.uniform(6, 25)))
        facade = pal.fill((0.6, 0.5, 0.45), 5).at(*shape.mask.shape)
        period = max(focal * 3.0 / z_b, 2.0)  # a window every 3 m
        yy, xx = cv.yy[shape.slices], cv.xx[shape.slices]
        facade[((xx % period) < period * 0.45) & ((yy % period) < period * 0.5)] *= 0.45
        cv.paint(shape, facade, ID["building"], z_b)
    for _ in range(rng.integers(1, 6)):  # trees: trunk and canopy
        x_t = rng.choice([-1.0, 1.0]) * (road_half + rng.uniform(1.5, 3.0))
        z_t, crown = rng.uniform(5, 40), rng.uniform(1.5, 3.0)
        x0, y0, x1, y1 = box(x_t, z_t, 0.35, 2.5)
        cv.paint(cv.rect(x0, y0, x1, y1), pal.color((0.35, 0.25, 0.15)), ID["vegetation"], z_t)
        s = focal / z_t
        canopy = cv.ellipse((x0 + x1) / 2, y0 - s * crown * 0.6, s * crown, s * crown * 1.1)
        cv.paint(canopy, pal.fill((0.2, 0.5, 0.2), 3), ID["vegetation"], z_t)
    for _ in range(_count(cv, rng, "vehicle", 1, 6)):  # vehicles on the road, seen from behind
        x_v, z_v = rng.uniform(-road_half + 1, road_half - 1), rng.uniform(4, 35)
        _vehicle_rear(cv, pal, rng, box(x_v, z_v, 1.8, 1.5), z_v)
    for _ in range(_count(cv, rng, "person", 0, 5)):  # pedestrians on the sidewalk
        x_p = rng.choice([-1.0, 1.0]) * (road_half + rng.uniform(0.5, 2.0))
        z_p = rng.uniform(3, 25)
        x0, y0, x1, y1 = box(x_p, z_p, 0.5, rng.uniform(1.55, 1.9))
        _person(cv, pal, rng, (x0 + x1) / 2, y1, y1 - y0, z_p)


_STREET_CLASSES = ("sky", "road", "sidewalk", "terrain", "building", "vegetation", "vehicle", "person")


@DOMAINS.register("driving")
def driving() -> Domain:
    return Domain("driving", _STREET_CLASSES, _street, Look(haze_beta=0.004, noise=0.02),
                  ("vehicle", "person"), VEHICLE_REAR)  # fmt: skip


@DOMAINS.register("synthetic")
def synthetic() -> Domain:
    """Driving geometry, rendered flat: no texture, no noise, saturated, uniform light."""
    look = Look(texture=0.0, cast=(1.1, 1.0, 1.1), light=(1.0, 1.0), noise=0.0, jitter=0.02)
    return Domain("synthetic", _STREET_CLASSES, _street, look, ("vehicle", "person"), VEHICLE_REAR)


# -- indoor -------------------------------------------------------------------------------------


def _room(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    focal, cam_h, ceil = w * rng.uniform(0.6, 0.9), 1.3, rng.uniform(2.5, 3.0)
    hor, vx = h * rng.uniform(0.4, 0.55), w * rng.uniform(0.35, 0.65)
    back, half = rng.uniform(4, 8), rng.uniform(2, 4)
    everywhere = np.ones((h, w), bool)
    wall = pal.frame((0.8, 0.75, 0.65), 10)
    cv.paint(everywhere, wall, ID["wall"], back)  # back wall
    dx = np.abs(cv.xx - vx)
    cv.paint(dx > 0.5, wall * 0.85, ID["wall"], focal * half / np.maximum(dx, 0.5))  # side walls
    floor_z = _ground_plane(cv, hor, focal, cam_h)
    cv.paint(floor_z < FAR, pal.fill((0.55, 0.4, 0.25), 3), ID["floor"], floor_z)
    above = hor - cv.yy
    ceil_z = np.where(above > 0.5, focal * (ceil - cam_h) / np.maximum(above, 0.5), FAR)
    cv.paint(ceil_z < FAR, pal.fill((0.92, 0.92, 0.9), 12), ID["ceiling"], ceil_z)
    for _ in range(_count(cv, rng, "furniture", 2, 6)):  # tables, sofas, cabinets on the floor
        z_f = rng.uniform(1.5, back - 0.3)
        wid, hei = rng.uniform(0.6, 2.0), rng.uniform(0.4, 1.6)
        x_f = rng.uniform(-half + wid / 2, half - wid / 2)
        box = _upright(cv, vx, hor, focal, cam_h, x_f, z_f, wid, hei)
        i = cv.new_instance(ID["furniture"])
        cv.paint(cv.rect(*box), pal.fill(rng.uniform(0.2, 0.8, 3), 4), ID["furniture"], z_f, i)
    n_people = _count(cv, rng, "person", 1, 4) if rng.random() < 0.8 else 0
    for _ in range(n_people):
        z_p, x_p = rng.uniform(1.5, back - 0.5), rng.uniform(-half + 0.5, half - 0.5)
        x0, y0, x1, y1 = _upright(cv, vx, hor, focal, cam_h, x_p, z_p, 0.5, rng.uniform(1.5, 1.9))
        _person(cv, pal, rng, (x0 + x1) / 2, y1, y1 - y0, z_p)


@DOMAINS.register("indoor")
def indoor() -> Domain:
    look = Look(texture=0.25, cast=(1.1, 0.97, 0.82), light=(0.55, 1.0), noise=0.04)
    return Domain("indoor", ("floor", "wall", "ceiling", "furniture", "person"), _room, look,
                  ("person", "furniture"), PERSON)  # fmt: skip


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
        color = pal.color(rng.uniform([0.6, 0.2, 0.3], [1.0, 0.6, 0.7]))
        for _ in range(rng.integers(2, 5)):
            spike = cv.triangle_up(cx + s * rng.uniform(-0.4, 0.4), base, s * 0.15, s * rng.uniform(0.5, 1.2))
            cv.paint(spike, color, ID["coral"], z_c)
    for _ in range(_count(cv, rng, "fish", 2, 10)):  # fish in the water column
        z_f, lift = rng.uniform(1.2, 10), rng.uniform(0.3, 3.0)
        x_f = rng.uniform(-1, 1) * z_f * w / (2 * focal)
        s = focal / z_f
        _fish(cv, pal, rng, vx + s * x_f, hor + s * (cam_h - lift), s * rng.uniform(0.3, 0.8), z_f,
              rng.choice([-1.0, 1.0]), rng.uniform(-0.3, 0.3))  # fmt: skip


@DOMAINS.register("underwater")
def underwater() -> Domain:
    look = Look(texture=0.3, cast=(0.55, 0.9, 1.05), haze_color=(0.1, 0.4, 0.5),
                haze_beta=0.15, light=(0.6, 1.0), noise=0.03)
    return Domain("underwater", ("water", "seabed", "rock", "coral", "fish"), _reef, look, ("fish",), FISH)


# -- aerial -------------------------------------------------------------------------------------


def _overhead(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    alt = rng.uniform(60, 150)
    s = w / rng.uniform(30, 70)  # pixels per metre: the image covers 30 to 70 m
    everywhere = np.ones((h, w), bool)
    field = pal.frame((0.4, 0.5, 0.25), 12)
    field2 = pal.frame((0.55, 0.45, 0.3), 12)
    patch = value_noise(rng, h, w, 16) > 0.5
    cv.paint(everywhere, np.where(patch[..., None], field2, field), ID["terrain"], alt)
    if rng.random() < 0.4:
        cv.paint(cv.ellipse(*rng.uniform(0, w, 2), *(s * rng.uniform(8, 25, 2)), rng.uniform(0, np.pi)),
                 pal.fill((0.15, 0.3, 0.4), 10), ID["water"], alt - 0.01)
    roads = []  # (point, angle, width in px)
    for _ in range(rng.integers(1, 3)):
        p, a, width = rng.uniform(0, w, 2), rng.uniform(0, np.pi), s * rng.uniform(6, 10)
        roads.append((p, a, width))
        cv.paint(cv.band(*p, a, width), pal.fill((0.4, 0.4, 0.42), 4), ID["road"], alt - 0.02)
    sun = rng.uniform(0, 2 * np.pi)
    for _ in range(rng.integers(2, 8)):  # buildings, with shadows cast on the ground
        cx, cy = rng.uniform(0, w, 2)
        bw, bl, bh, ang = s * rng.uniform(8, 25), s * rng.uniform(8, 25), rng.uniform(4, 30), rng.uniform(0, np.pi)
        shadow = cv.rotated_rect(cx + np.cos(sun) * s * bh * 0.4, cy + np.sin(sun) * s * bh * 0.4, bw, bl, ang)
        ys, xs = shadow.slices
        cv.rgb[ys, xs][shadow.mask & (cv.z[ys, xs] > alt - 0.5)] *= 0.55
        cv.paint(cv.rotated_rect(cx, cy, bw, bl, ang), pal.fill(rng.uniform(0.35, 0.8, 3), 6),
                 ID["building"], alt - bh)
    for _ in range(rng.integers(2, 12)):  # trees
        cv.paint(cv.ellipse(*rng.uniform(0, w, 2), *(s * rng.uniform(2, 5),) * 2),
                 pal.fill((0.15, 0.4, 0.15), 2), ID["vegetation"], alt - rng.uniform(5, 12))
    for _ in range(_count(cv, rng, "vehicle", 2, 12)):  # vehicles in their lanes, either way
        p, a, width = roads[rng.integers(len(roads))]
        d = np.array([np.cos(a), np.sin(a)])
        with np.errstate(divide="ignore"):  # the stretch of the road's centre line inside the frame
            ends = np.sort(np.stack([(0 - p) / d, (w - p) / d]), 0)
        along, across = rng.uniform(np.max(ends[0]), np.min(ends[1])), rng.uniform(-0.3, 0.3) * width
        centre = p + along * d + across * np.array([-d[1], d[0]])
        heading = a + (np.pi if rng.random() < 0.5 else 0.0) + rng.normal(0, 0.05)
        _vehicle_top(cv, pal, rng, *centre, s * 4.5, s * 2.0, heading, alt - 1.5)


@DOMAINS.register("aerial")
def aerial() -> Domain:
    look = Look(texture=0.4, cast=(1.0, 1.0, 0.95), haze_color=(0.75, 0.8, 0.85),
                haze_beta=0.003, light=(0.85, 1.2), noise=0.02)
    return Domain("aerial", ("road", "terrain", "building", "vegetation", "vehicle", "water"), _overhead, look,
                  ("vehicle",), VEHICLE_TOP)  # fmt: skip


# -- consumer: everyday mid-range snapshots -------------------------------------------------------


def _snapshot(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    """People, animals and household objects at a few metres, indoors or out, cluttered, in any light."""
    h, w = cv.h, cv.w
    focal, cam_h = w * rng.uniform(0.7, 1.1), rng.uniform(1.2, 1.7)
    hor, vx = h * rng.uniform(0.3, 0.6), w * rng.uniform(0.3, 0.7)
    z_g = _ground_plane(cv, hor, focal, cam_h)
    ground = z_g < FAR

    def box(x_m, z_m, w_m, h_m):
        return _upright(cv, vx, hor, focal, cam_h, x_m, z_m, w_m, h_m)

    if rng.random() < 0.5:  # outdoors: sky, grass, buildings and trees behind
        _sky(cv, pal, hor)
        cv.paint(ground, pal.fill((0.35, 0.55, 0.25), 3), ID["terrain"], z_g)
        for _ in range(rng.integers(1, 5)):
            z_b = rng.uniform(20, 60)
            cv.paint(cv.rect(*box(rng.uniform(-30, 30), z_b, rng.uniform(8, 25), rng.uniform(6, 20))),
                     pal.fill(rng.uniform(0.4, 0.8, 3), 3), ID["building"], z_b)  # fmt: skip
        for _ in range(rng.integers(3, 10)):
            z_t = rng.uniform(8, 30)
            x0, y0, x1, y1 = box(rng.uniform(-15, 15), z_t, rng.uniform(3, 6), rng.uniform(4, 8))
            cv.paint(cv.ellipse((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2),
                     pal.fill((0.2, 0.45, 0.2), 2), ID["vegetation"], z_t)  # fmt: skip
    else:  # indoors: a wall cluttered with shelves and pictures, a floor
        back = rng.uniform(3.5, 7.0)
        cv.paint(np.ones((h, w), bool), pal.fill(rng.uniform(0.5, 0.95, 3), 6), ID["wall"], back)
        cv.paint(ground & (z_g < back), pal.fill(rng.uniform(0.3, 0.7, 3), 2), ID["floor"], z_g)
        for _ in range(rng.integers(4, 12)):
            x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 0.8) * hor
            cv.paint(cv.rect(x0, y0, x0 + rng.uniform(0.05, 0.3) * w, y0 + rng.uniform(0.05, 0.3) * h),
                     pal.fill(rng.uniform(0.05, 1.0, 3), 2), ID["wall"], back * (1 - 1e-3))  # fmt: skip
    for _ in range(rng.integers(0, 3)):  # tables with bottles on them (bottles on the floor without tables)
        z_f, wid, hei = rng.uniform(2.0, 6.0), rng.uniform(0.8, 1.6), rng.uniform(0.6, 0.9)
        x0, y0, x1, y1 = box(rng.uniform(-2.5, 2.5), z_f, wid, hei)
        stand = y1
        if cv.draws("furniture"):
            i, stand = cv.new_instance(ID["furniture"]), y0 + 0.05 * (y1 - y0)
            cv.paint(cv.rect(x0, y0, x1, y0 + 0.15 * (y1 - y0)), pal.fill(rng.uniform(0.3, 0.7, 3), 2),
                     ID["furniture"], z_f, i)  # fmt: skip
            for x in (x0 + 0.08 * (x1 - x0), x1 - 0.08 * (x1 - x0)):
                cv.paint(cv.segment(x, y0, x, y1, 0.06 * (x1 - x0)), (0.2, 0.15, 0.1), ID["furniture"], z_f, i)
        for _ in range(_count(cv, rng, "bottle", 0, 4)):
            _bottle(cv, pal, rng, rng.uniform(x0, x1), stand, (y1 - y0) * rng.uniform(0.3, 0.45), z_f * (1 - 2e-2))
    for _ in range(_count(cv, rng, "animal", 0, 3)):
        z_a = rng.uniform(1.5, 7.0)
        x0, y0, x1, y1 = box(rng.uniform(-2, 2), z_a, rng.uniform(0.6, 1.1), 0.6)
        _animal(cv, pal, rng, (x0 + x1) / 2, y1, x1 - x0, z_a)
    for _ in range(_count(cv, rng, "person", 1, 4)):
        z_p = rng.uniform(1.8, 9.0)
        x0, y0, x1, y1 = box(rng.uniform(-0.45, 0.45) * z_p * w / focal, z_p, 0.5, rng.uniform(1.1, 1.9))
        _person(cv, pal, rng, (x0 + x1) / 2, y1, y1 - y0, z_p)


@DOMAINS.register("consumer")
def consumer() -> Domain:
    look = Look(texture=0.45, light=(0.45, 1.3), noise=0.035, jitter=0.25, cast_jitter=0.12)
    return Domain("consumer", ("sky", "terrain", "building", "vegetation", "person", "floor", "wall", "furniture",
                               "animal", "bottle"), _snapshot, look, ("person", "furniture", "animal", "bottle"),
                  PERSON)  # fmt: skip


# -- close-up: one or two large subjects at short range, background out of focus -----------------


def _macro(cv: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    h, w = cv.h, cv.w
    everywhere = np.ones((h, w), bool)
    z_bg = rng.uniform(1.5, 5.0)
    if rng.random() < 0.4:  # sky through the foliage
        _sky(cv, pal, h * rng.uniform(0.5, 1.0))
        cv.paint(value_noise(rng, h, w, w / 3) > 0.45, pal.fill((0.2, 0.45, 0.15), 6), ID["vegetation"], z_bg)
    else:
        cv.paint(everywhere, pal.fill((0.2, 0.45, 0.15), 6), ID["vegetation"], z_bg)
    for _ in range(rng.integers(3, 9)):  # leaves between the subject and the background
        cv.paint(cv.ellipse(*rng.uniform(0, w, 2), *(w * rng.uniform(0.05, 0.2, 2)), rng.uniform(0, np.pi)),
                 pal.fill(rng.uniform([0.1, 0.3, 0.05], [0.5, 0.7, 0.3]), 3), ID["vegetation"],
                 z_bg * rng.uniform(0.4, 0.95))  # fmt: skip
    cv.defocus(w * rng.uniform(0.025, 0.05))  # the subject is sharp, the rest is not
    kinds = [k for k in ("insect", "flower") if cv.draws(k)]
    for n in range(int(rng.integers(1, 3)) if kinds else 0):
        kind = kinds[0] if len(kinds) == 1 or rng.random() < 0.6 else kinds[1]
        size = w * (rng.uniform(0.55, 0.9) if n == 0 else rng.uniform(0.3, 0.5))
        cx, cy = (w / 2 + rng.uniform(-0.15, 0.15, 2) * w) if n == 0 else rng.uniform(0, w, 2)
        z_s = rng.uniform(0.12, 0.35)
        if kind == "flower":
            _flower(cv, pal, rng, cx, cy, size / 2, z_s)
        else:
            _insect(cv, pal, rng, cx, cy, size, rng.uniform(0, 2 * np.pi), z_s)


@DOMAINS.register("close-up")
def close_up() -> Domain:
    look = Look(texture=0.5, cast=(1.05, 1.0, 0.92), light=(0.85, 1.2), noise=0.012, jitter=0.15)
    return Domain("close-up", ("sky", "vegetation", "flower", "insect"), _macro, look, ("flower", "insect"), INSECT)


# -- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One rendered scene, every label from the same geometry."""

    image: np.ndarray  # [H, W, 3] float32 in [0, 1]
    classes: np.ndarray  # [H, W] int64 VOCAB ids, 255 = ignore
    depth: np.ndarray  # [H, W] float32 metres, 0 = invalid
    instances: np.ndarray  # [H, W] int32 instance ids, 0 = no object
    ids: np.ndarray  # [N] instance ids of the objects with >= MIN_PIXELS visible pixels
    labels: np.ndarray  # [N] int64 VOCAB ids
    boxes: np.ndarray  # [N, 4] float32 xyxy pixels: the extent of each object's visible pixels
    keypoints: np.ndarray  # [N, K, 3] float32 (x, y, visibility) in the domain's schema; K = 0 without one


def render_scene(domain: Domain, rng: np.random.Generator, size: int, things: frozenset[str] | None = None,
                 canvas: Callable[[], Canvas] | None = None) -> Scene:  # fmt: skip
    """Compose and render one scene of `domain` at `size` px, drawing only objects of `things` (None = all).

    `canvas` builds the canvas to compose on (tests construct scenes with it);
    by default a fresh [size, size] one.
    """
    cv = canvas() if canvas is not None else Canvas(size, size, things)
    domain.compose(cv, rng, Palette(cv, rng, domain.look))
    return finish(cv, domain, rng)


def finish(cv: Canvas, domain: Domain, rng: np.random.Generator) -> Scene:
    """The scene painted on `cv`, rendered with `domain`'s look, with its instances and keypoints."""
    look = domain.look
    rgb = cv.rgb
    if look.haze_beta > 0:  # attenuation towards the haze colour with distance
        t = np.exp(-look.haze_beta * np.minimum(cv.z, 1e3))[..., None]
        rgb = rgb * t + np.asarray(look.haze_color, np.float32) * (1 - t)
    cast = np.asarray(look.cast, np.float32)
    if look.cast_jitter > 0:
        cast = cast * np.clip(1 + rng.normal(0, look.cast_jitter, 3), 0.5, 1.5).astype(np.float32)
    rgb = rgb * (cast * np.float32(rng.uniform(*look.light)))
    if look.noise > 0:
        rgb = rgb + np.float32(look.noise) * rng.standard_normal(rgb.shape, dtype=np.float32)
    ids, labels, boxes = cv.instances(MIN_PIXELS)
    schema = domain.keypoints
    k = len(schema.names) if schema else 0
    kps = np.zeros((len(ids), k, 3), np.float32)
    if schema is not None:
        category = ID[schema.category]
        for n, (i, cls) in enumerate(zip(ids, labels, strict=True)):
            if cls == category:
                kps[n] = cv.keypoints(int(i), k)
    return Scene(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv.cls, cv.depth_map(), cv.inst, ids, labels, boxes, kps)

