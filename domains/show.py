"""Pictures of samples with their labels overlaid: mask, boxes, keypoints with skeleton, and depth.

    grid = draw_grid([ds[i] for i in range(8)], ds.info, per_row=4)   # a PIL image
    grid.save("grid.png")

Each sample is one tile (image with the segmentation blended in, boxes in
their class colour, keypoints with the skeleton; visible points filled,
occluded ones hollow), followed by a depth tile (magma, near = bright,
invalid = black) when the sample has depth. A legend of the classes present
runs along the bottom. Any task type works alone or with others: a sample
draws what it has.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from domains.base import IGNORE, DatasetInfo, Sample

PAD = 4
LEGEND_ROW = 14


def palette(n: int) -> np.ndarray:
    """n distinct colours, uint8 [n, 3] (tab20, then hsv); n = 0 gives none."""
    base = colormaps["tab20"](np.arange(20))[:, :3]
    extra = colormaps["hsv"](np.linspace(0, 1, max(n - 20, 0), endpoint=False))[:, :3]
    return (np.concatenate([base, extra])[:n] * 255).astype(np.uint8).reshape(n, 3)


def _overlay(sample: Sample, info: DatasetInfo, colors: np.ndarray, thing_colors: np.ndarray) -> Image.Image:
    rgb = (sample["image"].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.float32)  # [H, W, 3]
    if "segmentation" in sample:
        seg = sample["segmentation"].numpy()
        labelled = seg != IGNORE
        tint = colors[np.where(labelled, seg, 0) % len(colors)].astype(np.float32)
        rgb[labelled] = 0.5 * rgb[labelled] + 0.5 * tint[labelled]
    tile = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(tile)
    boxes = sample.get("boxes")
    if boxes is not None:
        labels = sample["labels"].tolist()
        for box, label in zip(boxes.tolist(), labels, strict=True):
            draw.rectangle(box, outline=tuple(int(c) for c in thing_colors[label % len(thing_colors)]), width=1)
    kps = sample.get("keypoints")
    if kps is not None and info.keypoints is not None:
        r = max(1.0, tile.width / 96)
        for points in kps.tolist():
            for a, b in info.keypoints.skeleton:
                if points[a][2] > 0 and points[b][2] > 0:
                    draw.line([tuple(points[a][:2]), tuple(points[b][:2])], fill=(255, 255, 255), width=1)
            for x, y, v in points:
                if v > 0:
                    fill = (255, 230, 0) if v == 2 else None
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 230, 0))
    return tile


def _depth(depth: np.ndarray) -> Image.Image:
    valid = depth > 0
    out = np.zeros((*depth.shape, 3), np.uint8)
    if valid.any():
        inv = 1.0 / depth[valid]  # near = bright
        lo, hi = np.percentile(inv, [2, 98])
        t = np.clip((inv - lo) / max(hi - lo, 1e-6), 0, 1)
        out[valid] = (colormaps["magma"](t)[:, :3] * 255).astype(np.uint8)
    return Image.fromarray(out)


def draw_grid(samples: Sequence[Sample], info: DatasetInfo, per_row: int = 4, title: str | None = None) -> Image.Image:
    """`samples` drawn `per_row` to a row (each with its depth tile beside it), a legend below."""
    if not samples:
        raise ValueError("draw_grid: no samples to draw")
    colors = palette(len(info.classes)) if info.classes else np.array([[255, 0, 0]], np.uint8)
    thing_colors = np.array([colors[info.classes.index(t)] if t in info.classes else c
                             for t, c in zip(info.things, palette(len(info.things)), strict=True)]
                            or [[255, 0, 0]], np.uint8)  # no things (segmentation or depth only): unused  # fmt: skip
    tiles = []
    for s in samples:
        parts = [_overlay(s, info, colors, thing_colors)]
        if "depth" in s:
            parts.append(_depth(s["depth"].numpy()))
        h = max(p.height for p in parts)
        cell = Image.new("RGB", (sum(p.width for p in parts) + PAD * (len(parts) - 1), h), (24, 24, 24))
        x = 0
        for p in parts:
            cell.paste(p, (x, 0))
            x += p.width + PAD
        tiles.append(cell)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    cols = min(per_row, len(tiles))
    rows = -(-len(tiles) // cols)
    present = sorted({int(c) for s in samples if "segmentation" in s for c in s["segmentation"].unique().tolist()} - {IGNORE})
    head = LEGEND_ROW if title else 0
    legend_rows = -(-len(present) // max(1, (cols * (tw + PAD)) // 90)) if present else 0
    width = cols * (tw + PAD) + PAD
    grid = Image.new("RGB", (width, head + rows * (th + PAD) + PAD + legend_rows * LEGEND_ROW), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((PAD, 1), title, fill=(230, 230, 230))
    for i, tile in enumerate(tiles):
        grid.paste(tile, (PAD + (i % cols) * (tw + PAD), head + PAD + (i // cols) * (th + PAD)))
    x, y = PAD, head + rows * (th + PAD) + PAD
    for c in present:
        if x + 90 > width:
            x, y = PAD, y + LEGEND_ROW
        draw.rectangle([x, y + 2, x + 9, y + 11], fill=tuple(int(v) for v in colors[c]))
        name = info.classes[c] if c < len(info.classes) else str(c)
        draw.text((x + 12, y + 1), name[:12], fill=(230, 230, 230))
        x += 90
    return grid
