"""Augmentations shared by every task, on samples in the standard form.

    out = augment(sample, generator, size=64, flip_pairs=info.keypoints.flip_pairs)

Each transform takes one sample (image [3, H, W], segmentation [H, W], depth
[H, W], boxes [N, 4], labels [N], keypoints [N, K, 3]; any of them may be
absent) and returns a new one; inputs are never modified. Coordinates are
continuous pixels (pixel j covers [j, j + 1)), so a flip maps x to W - x, a
rescale by f maps x to f x and a crop at (top, left) maps x to x - left.
Unlabelled keypoints (visibility 0) are kept at (0, 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from domains.base import DENSE, IGNORE, Sample

PAD = {"image": 0.0, "segmentation": IGNORE, "depth": 0.0}  # what a crop puts past the image's edges


def _size(sample: Sample) -> tuple[int, int]:
    for key in DENSE:
        if key in sample:
            return sample[key].shape[-2], sample[key].shape[-1]
    raise KeyError(f"a sample needs one of the dense keys {DENSE} to have a size")


def _labelled(kps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Keypoints [N, K, 3] with xy replaced by `xy` [N, K, 2] where labelled, (0, 0) where not."""
    vis = kps[..., 2:3]
    return torch.cat([torch.where(vis > 0, xy, torch.zeros_like(xy)), vis], -1)


def hflip(sample: Sample, flip_pairs: tuple[tuple[int, int], ...] = ()) -> Sample:
    """The sample mirrored left-right: dense keys, boxes, and keypoints with left/right indices swapped."""
    _, w = _size(sample)
    out = {k: (v.flip(-1) if k in DENSE else v) for k, v in sample.items()}
    if "boxes" in sample:
        b = sample["boxes"]  # [N, 4] xyxy
        out["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
    if "keypoints" in sample:
        kps = sample["keypoints"]  # [N, K, 3]
        xy = torch.stack([w - kps[..., 0], kps[..., 1]], -1)
        kps = _labelled(kps, xy)
        if flip_pairs:
            order = list(range(kps.shape[1]))
            for a, b in flip_pairs:
                order[a], order[b] = b, a
            kps = kps[:, order]
        out["keypoints"] = kps
    return out


def rescale(sample: Sample, factor: float) -> Sample:
    """The sample scaled by `factor`: image bilinear, segmentation and depth nearest, boxes and keypoints scaled.

    The new size is round(H * factor) x round(W * factor); coordinates scale by
    the exact ratio of new to old size on each axis.
    """
    h, w = _size(sample)
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    out = dict(sample)
    if "image" in sample:
        img = sample["image"][None]  # [1, 3, H, W]
        out["image"] = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False,
                                     antialias=factor < 1).clamp(0, 1)[0]  # fmt: skip
    for key in ("segmentation", "depth"):
        if key in sample:
            x = sample[key][None, None].float()  # [1, 1, H, W]
            y = F.interpolate(x, size=(nh, nw), mode="nearest-exact")[0, 0]
            out[key] = y.to(sample[key].dtype)
    sx, sy = nw / w, nh / h
    if "boxes" in sample:
        out["boxes"] = sample["boxes"] * sample["boxes"].new_tensor([sx, sy, sx, sy])
    if "keypoints" in sample:
        kps = sample["keypoints"]
        out["keypoints"] = _labelled(kps, kps[..., :2] * kps.new_tensor([sx, sy]))
    return out


def crop(sample: Sample, top: int, left: int, size: int) -> Sample:
    """The square [size, size] window at (top, left), padded past the image's edges (see PAD).

    Boxes are shifted and clipped to the window and dropped (with their labels
    and keypoints) when nothing of them is left; keypoints outside the window
    become unlabelled (visibility 0).
    """
    h, w = _size(sample)
    out = dict(sample)
    r0, r1 = max(top, 0), min(top + size, h)  # rows of the source inside the window
    c0, c1 = max(left, 0), min(left + size, w)
    for key in DENSE:
        if key in sample:
            x = sample[key]
            y = x.new_full((*x.shape[:-2], size, size), PAD[key])
            if r1 > r0 and c1 > c0:
                y[..., r0 - top : r1 - top, c0 - left : c1 - left] = x[..., r0:r1, c0:c1]
            out[key] = y
    if "boxes" in sample:
        b = sample["boxes"] - sample["boxes"].new_tensor([left, top, left, top])
        b = b.clamp(0, size)  # [N, 4]
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        out["boxes"] = b[keep]
        for key in ("labels", "keypoints"):
            if key in sample:
                out[key] = sample[key][keep]
    if "keypoints" in out:
        kps = out["keypoints"]
        xy = kps[..., :2] - kps.new_tensor([left, top])
        inside = ((xy >= 0) & (xy < size)).all(-1, keepdim=True) & (kps[..., 2:3] > 0)
        out["keypoints"] = torch.cat([torch.where(inside, xy, torch.zeros_like(xy)),
                                      torch.where(inside, kps[..., 2:3], torch.zeros_like(kps[..., 2:3]))], -1)  # fmt: skip
    return out


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive) from `generator`."""
    return low + int(torch.randint(high - low + 1, (1,), generator=generator))


def random_crop(sample: Sample, generator: torch.Generator, size: int) -> Sample:
    """A random [size, size] crop (padded where the image is smaller); deterministic for a generator state.

    When the sample has boxes and one of them fits in `size` x `size`, one of
    those (chosen at random) lies wholly inside the crop.
    """
    h, w = _size(sample)
    rows = (min(0, h - size), max(0, h - size))  # allowed range of `top`
    cols = (min(0, w - size), max(0, w - size))
    boxes = sample.get("boxes")
    if boxes is not None and len(boxes):
        x0, y0 = boxes[:, 0].floor().long().clamp(min=0), boxes[:, 1].floor().long().clamp(min=0)
        x1, y1 = boxes[:, 2].ceil().long().clamp(max=w), boxes[:, 3].ceil().long().clamp(max=h)
        fits = torch.nonzero((x1 - x0 <= size) & (y1 - y0 <= size)).flatten()
        if len(fits):
            n = int(fits[_randint(generator, 0, len(fits) - 1)])
            rows = (max(rows[0], int(y1[n]) - size), min(rows[1], int(y0[n])))
            cols = (max(cols[0], int(x1[n]) - size), min(cols[1], int(x0[n])))
    return crop(sample, _randint(generator, *rows), _randint(generator, *cols), size)


def augment(sample: Sample, generator: torch.Generator, size: int, flip_pairs: tuple[tuple[int, int], ...] = (),
            scale: tuple[float, float] = (0.75, 1.25)) -> Sample:  # fmt: skip
    """Mensink's training augmentation: random rescale (log-uniform in `scale`), random crop to `size`, random flip.

    Returns dense tensors of exactly [.., size, size]; the same generator state
    gives the same output. `flip_pairs` are the keypoint schema's left/right pairs.
    """
    lo, hi = scale
    factor = math.exp(math.log(lo) + float(torch.rand((), generator=generator)) * (math.log(hi) - math.log(lo)))
    out = random_crop(rescale(sample, factor), generator, size)
    if float(torch.rand((), generator=generator)) < 0.5:
        out = hflip(out, flip_pairs)
    return out
