"""Frozen features of a source model on a target's training subset: what the transferability proxies score.

    enc = load_encoder("source.pt")                        # the source's backbone + neck, never its head
    feats = proxy_features(enc, target_train, "segmentation", max_samples=4096, seed=0)
    feats.f, feats.y, feats.regression                     # [M, D] float32; [M] int64 or float32; bool
    for name, (f, y, regression) in feats.targets().items():  # detection also scores its objects' boxes ("box")
        logme(f, y, regression=regression)                 # analysis.proxies
    domain_similarity(pooled_features(enc, source_train, max_images=256), feats.pooled)

Only the backbone and the FPN neck run (a `TaskModel` or an `Encoder`), so a source of any task type scores a
target of any task type. Per target task type, one row of `f` per sampled element of the target's labels:

- segmentation: a labelled pixel (255 = ignore skipped), class-balanced: at most max_samples // classes per
  class; y = class id. Features are bilinearly sampled at the pixel centre from the finest FPN level (stride 4):
  the level every dense head here reads (`tasks.heads.DenseHead`), which FPN's top-down path has already merged
  with every coarser level, so one 64-d vector per pixel carries all scales at the head's own resolution.
- depth: a valid pixel (depth > 0), uniformly sampled (at most max_samples), from the same level; y = log depth
  in metres (float, regression), the scale on which depth errors are relative.
- detection: a ground-truth box (degenerate ones skipped), y = class id + 1, and background boxes, y = 0: per
  ground-truth box `BACKGROUND_BOXES` boxes of its size placed uniformly at random in its image (a generator
  seeded by (seed, sample index)), kept where they overlap every ground-truth box of the image by an IoU below
  `BACKGROUND_IOU` (a detector's classifier tells objects from background too, and a target with one object
  class still has two classes to score). Class-balanced like segmentation; a box's features are
  `MultiScaleRoIAlign` 7x7 (sampling ratio 2) from the FPN level FPN's rule assigns to its size (Lin et al.,
  Eq. 1: k = floor(4 + log2(sqrt(wh) / 224)), clamped to the levels; torchvision's rule, the one this project's
  Faster R-CNN and Keypoint R-CNN heads pool with), averaged over the 7x7 cells to one vector. `box` holds each
  box's normalised coordinates (x1/W, y1/H, x2/W, y2/H): the objects' boxes are a second, regression target.
- keypoints: a labelled keypoint (visibility > 0: the points COCO's OKS scores and the keypoint head trains on)
  of an object of the schema's category, y = keypoint index + 1; and background points, y = 0: pixel centres
  farther than `BACKGROUND_RADIUS` strides of the sampled level from every labelled keypoint of their image.
  Balanced over the K + 1 classes; point features from the finest level, as for segmentation.

Sampling: every candidate (pixel, box, keypoint) gets a random key from a numpy generator seeded by
(seed, sample index), and each class keeps the candidates with the smallest keys (bottom-k): a uniform sample
without replacement of each class's candidates over the whole split, the same whatever the batch size, worker
count or order of the batches, and held in O(classes x cap) memory. Only the candidates that can still enter
the sample get features; one batch's feature maps are alive at a time. The model runs in eval mode under
`torch.no_grad()` (its train/eval mode is restored after); nothing reads torch's or numpy's global generator.
Imports neither Ray nor MLflow.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import Batch, EmptySplitError
from tasks.data import Subset, eval_loader
from tasks.model import MEAN, STD

TASK_TYPES = ("segmentation", "depth", "detection", "keypoints")
BACKGROUND_RADIUS = 2.0  # keypoints: background points lie farther than this many strides from every keypoint
BACKGROUND_BOXES = 2  # detection: background boxes drawn per ground-truth box (of its size)
BACKGROUND_IOU = 0.3  # detection: a background box overlaps every ground-truth box by less than this IoU
ROI_SIZE, ROI_SAMPLING = 7, 2  # detection: the RoIAlign grid of the project's Faster R-CNN box head


@dataclass(frozen=True)
class Features:
    """Frozen features of one target split, one row per sampled element (see the module docstring).

    `f` [M, D] float32; `y` [M] int64 class ids, or float32 [M] regression targets when `regression`;
    `index` [M] int64 the row's sample index in the dataset; `xy` [M, 2] float32 its (x, y) in pixels (a box's
    centre for detection); `box` [M, 4] float32 the normalised box (detection only, else None); `pooled`
    [n_images, P] float32 each image's globally averaged pyramid levels, concatenated (for `domain_similarity`).
    Rows are ordered by class, then by sampling key.
    """

    task: str
    f: np.ndarray
    y: np.ndarray
    regression: bool
    index: np.ndarray
    xy: np.ndarray
    pooled: np.ndarray
    box: np.ndarray | None = None

    def targets(self) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
        """{name: (f, y, regression)}: features and what a proxy scores them against; detection adds its objects'
        rows (not the background's) against their normalised boxes as "box"."""
        name = {"segmentation": "class", "depth": "log_depth", "detection": "class", "keypoints": "keypoint"}
        out = {name[self.task]: (self.f, self.y, self.regression)}
        if self.box is not None:
            objects = self.y > 0
            out["box"] = (self.f[objects], self.box[objects], True)
        return out


class Encoder(nn.Module):
    """A source model without its head: `backbone` (a timm features_only model) and `neck` (an FPN, or None).

    Its state-dict keys start `backbone.` and `neck.` like a `TaskModel`'s, so checkpoints load into it as is.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck


def load_encoder(checkpoint: str | Path | BinaryIO, backbone: str | None = None) -> Encoder:
    """The backbone and neck of one of our checkpoints (`tasks.transfer.save_checkpoint`), never its head.

    `backbone` names the timm model; by default the checkpoint's meta says. Every backbone (and neck, when the
    checkpoint has one) tensor must load: a ValueError names what is missing or misshapen otherwise. Building
    the modules leaves torch's global generator as it was (their random weights are all overwritten).
    """
    from tasks.backbone import create_backbone
    from tasks.heads import Neck
    from tasks.transfer import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    state, meta = loaded["state_dict"], loaded.get("meta", {})
    name, where = backbone or meta.get("backbone"), getattr(checkpoint, "name", checkpoint)  # a path, or a file's
    if name is None:
        raise ValueError(f"checkpoint {where!r}: its meta names no backbone; pass backbone=NAME")
    with torch.random.fork_rng(devices=[]):
        body = create_backbone(name, "scratch")
        has_neck = any(k.startswith("neck.") for k in state)
        encoder = Encoder(body, Neck(body.feature_info) if has_neck else None)
    wanted = encoder.state_dict()
    part = {k: v for k, v in state.items() if k.split(".", 1)[0] in ("backbone", "neck")}
    bad = sorted(k for k in wanted if k not in part or part[k].shape != wanted[k].shape)
    extra = sorted(set(part) - set(wanted))
    if bad or extra:
        raise ValueError(f"checkpoint {where!r}: not a {name!r} backbone + neck: {len(bad)} tensors missing or "
                         f"misshapen (e.g. {(bad + extra)[0]}), {len(extra)} unexpected")  # fmt: skip
    encoder.load_state_dict(part)
    return encoder


# ---------------------------------------------------------------------------------------------------------------
# The pyramid


def _pyramid(model: nn.Module, images: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], list[int]]:
    """Images [B, 3, H, W] in [0, 1] -> ({"0": [B, C0, H/s0, W/s0], ...} finest first, [s0, s1, ...]).

    With a neck: its FPN levels without the max-pooled extra one (a subsampled copy of the coarsest); without:
    the backbone's maps of stride >= 4, as the neck would take them.
    """
    x = (images - MEAN.to(images.device)) / STD.to(images.device)
    maps = model.backbone(x)
    neck = getattr(model, "neck", None)
    if neck is not None:
        levels = OrderedDict((k, v) for k, v in neck(maps).items() if k != "pool")
        return levels, list(neck.strides[: len(levels)])
    strides = model.backbone.feature_info.reduction()
    keep = [i for i, s in enumerate(strides) if s >= 4] or list(range(len(strides)))
    return OrderedDict((str(n), maps[i]) for n, i in enumerate(keep)), [strides[i] for i in keep]


def _point_features(level: torch.Tensor, stride: int, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of `level` [C, h, w] (stride `stride`) at image points `xy` [P, 2] (pixels) -> [P, C]."""
    h, w = level.shape[-2:]
    grid = torch.stack([xy[:, 0] / (stride * w), xy[:, 1] / (stride * h)], dim=-1) * 2 - 1  # [P, 2] in [-1, 1]
    out = F.grid_sample(level[None], grid[None, None].to(level.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)  # [1, C, 1, P]  # fmt: skip
    return out[0, :, 0].T


def _pixel_centres(h: int, w: int) -> np.ndarray:
    """[h * w, 2] float32 (x + 0.5, y + 0.5) of every pixel, row-major."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) + 0.5


# ---------------------------------------------------------------------------------------------------------------
# Candidates per task type: what may be sampled in one image


@dataclass
class _Candidates:
    cls: np.ndarray  # [n] int64 the class it is balanced over
    xy: np.ndarray  # [n, 2] float32 image point (pixels): where point features are read
    y: np.ndarray  # [n] the target: int64 class id or float32
    box: np.ndarray | None = None  # [n, 4] float32 xyxy pixels (detection)

    def take(self, i: np.ndarray) -> _Candidates:
        return _Candidates(self.cls[i], self.xy[i], self.y[i], None if self.box is None else self.box[i])


def _segmentation(batch: Batch, b: int, ctx: dict[str, Any]) -> _Candidates:
    seg = batch["segmentation"][b].numpy().ravel()  # [H * W]
    h, w = batch["segmentation"][b].shape
    keep = np.flatnonzero((seg != 255) & (seg >= 0))
    cls = seg[keep].astype(np.int64)
    return _Candidates(cls, _pixel_centres(h, w)[keep], cls)


def _depth(batch: Batch, b: int, ctx: dict[str, Any]) -> _Candidates:
    depth = batch["depth"][b].numpy().ravel()  # [H * W] metres, 0 = invalid
    h, w = batch["depth"][b].shape
    keep = np.flatnonzero(np.isfinite(depth) & (depth > 0))
    log_depth = np.log(depth[keep]).astype(np.float32)
    return _Candidates(np.zeros(len(keep), np.int64), _pixel_centres(h, w)[keep], log_depth)


def _detection(batch: Batch, b: int, ctx: dict[str, Any]) -> _Candidates:
    h, w = batch["image"].shape[-2:]
    boxes = batch["boxes"][b].numpy().astype(np.float32).reshape(-1, 4)  # [N, 4] xyxy pixels
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    labels = batch["labels"][b].numpy().astype(np.int64)
    keep = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    boxes, labels = boxes[keep], labels[keep]
    sizes = np.repeat(boxes[:, 2:] - boxes[:, :2], BACKGROUND_BOXES, axis=0)  # [N * BACKGROUND_BOXES, 2]
    corner = np.random.default_rng([ctx["seed"], ctx["index"], 1]).random(sizes.shape) * (np.array([w, h]) - sizes)
    background = np.concatenate([corner, corner + sizes], axis=1).astype(np.float32)
    if len(boxes):
        from torchvision.ops import box_iou

        overlap = box_iou(torch.from_numpy(background), torch.from_numpy(boxes)).max(dim=1).values.numpy()
        background = background[overlap < BACKGROUND_IOU]
    every = np.concatenate([boxes, background]).astype(np.float32)
    cls = np.concatenate([labels + 1, np.zeros(len(background), np.int64)])
    centres = np.stack([every[:, [0, 2]].mean(1), every[:, [1, 3]].mean(1)], axis=1).astype(np.float32)
    return _Candidates(cls, centres, cls, every)


def _keypoints(batch: Batch, b: int, ctx: dict[str, Any]) -> _Candidates:
    h, w = batch["image"].shape[-2:]
    kps = batch["keypoints"][b].numpy().astype(np.float32)  # [N, K, 3] (x, y, visibility)
    own = batch["labels"][b].numpy() == ctx["category"]
    kps = kps[own].reshape(-1, ctx["num_keypoints"], 3)
    ids = np.broadcast_to(np.arange(kps.shape[1]), kps.shape[:2]).ravel()  # [N * K] keypoint index
    pts, vis = kps[..., :2].reshape(-1, 2), kps[..., 2].ravel()
    labelled = vis > 0
    inside = labelled & (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)
    centres = _pixel_centres(h, w)  # [H * W, 2]
    if labelled.any():  # background: pixel centres farther than the radius from every labelled keypoint
        d2 = ((centres[:, None, :] - pts[labelled][None, :, :]) ** 2).sum(-1).min(1)  # [H * W]
        background = centres[d2 > (BACKGROUND_RADIUS * ctx["stride"]) ** 2]
    else:
        background = centres
    cls = np.concatenate([ids[inside] + 1, np.zeros(len(background), np.int64)]).astype(np.int64)
    xy = np.concatenate([pts[inside], background]).astype(np.float32)
    return _Candidates(cls, xy, cls)


# ---------------------------------------------------------------------------------------------------------------
# Bottom-k sampling over a stream


class _BottomK:
    """Per class, the `cap` candidates with the smallest keys offered so far, with their arrays.

    Keys are i.i.d. uniform, so each class's kept set is a uniform sample without replacement of all its
    candidates, and it depends only on the candidates and their keys, not on the order they come in.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept: dict[int, dict[str, np.ndarray]] = {}

    def worth(self, cls: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Indices of the candidates (cls [n], keys [n]) that may enter: per class the `cap` smallest keys below
        that class's current largest kept key (any, until it holds `cap`)."""
        out = []
        for c in np.unique(cls):
            idx = np.flatnonzero(cls == c)
            kept = self.kept.get(int(c))
            if kept is not None and len(kept["key"]) >= self.cap:
                idx = idx[keys[idx] < kept["key"].max()]
            if len(idx) > self.cap:
                idx = idx[np.argsort(keys[idx], kind="stable")[: self.cap]]
            out.append(idx)
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def add(self, cls: np.ndarray, key: np.ndarray, **arrays: np.ndarray) -> None:
        for c in np.unique(cls):
            sel = cls == c
            new = {"key": key[sel], **{k: v[sel] for k, v in arrays.items()}}
            old = self.kept.get(int(c))
            merged = new if old is None else {k: np.concatenate([old[k], new[k]]) for k in new}
            order = np.argsort(merged["key"], kind="stable")[: self.cap]
            self.kept[int(c)] = {k: v[order] for k, v in merged.items()}

    def result(self) -> dict[str, np.ndarray] | None:
        """Every kept array concatenated over classes (ascending), rows ordered by key within a class."""
        if not self.kept:
            return None
        parts = [self.kept[c] for c in sorted(self.kept)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------------------------
# The entry points

_CANDIDATES: dict[str, Callable[[Batch, int, dict[str, Any]], _Candidates]] = {
    "segmentation": _segmentation, "depth": _depth, "detection": _detection, "keypoints": _keypoints}  # fmt: skip
_LABELS = {"segmentation": "segmentation", "depth": "depth", "detection": "boxes", "keypoints": "keypoints"}


def _classes(task: str, info: Any, name: str) -> tuple[int, dict[str, Any]]:
    """How many classes `task`'s samples are balanced over on a dataset like `info`, and what candidates need."""
    if task == "depth":
        return 1, {}
    if info is None:
        raise ValueError(f"dataset {name!r}: no `info` (DatasetInfo); {task} features need its label space")
    if task == "segmentation":
        return len(info.classes), {}
    if task == "detection":
        if not info.things:
            raise ValueError(f"dataset {name!r} has no object classes (things); expected a detection dataset")
        return len(info.things) + 1, {}  # and the background
    from tasks.keypoints import keypoint_category

    category = keypoint_category(info)  # a ValueError naming the dataset when it has no keypoint schema
    return len(info.keypoints.names) + 1, {"category": category, "num_keypoints": len(info.keypoints.names)}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _pooled(levels: OrderedDict[str, torch.Tensor]) -> torch.Tensor:
    """[B, P] float32 on the CPU: each level [B, C_l, h, w] averaged over space, concatenated over levels."""
    return torch.cat([v.float().mean(dim=(-2, -1)) for v in levels.values()], dim=1).cpu()


def _point_rows(levels: OrderedDict[str, torch.Tensor], strides: list[int], chosen: list[_Candidates],
                size: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """[n, C]: the finest level's features at every chosen point, image after image."""
    finest = next(iter(levels.values()))  # [B, C, h, w]
    rows = [_point_features(finest[b], strides[0], torch.from_numpy(c.xy).to(finest.device)) for b, c in
            enumerate(chosen)]  # fmt: skip
    return torch.cat(rows)


def _box_rows(levels: OrderedDict[str, torch.Tensor], strides: list[int], chosen: list[_Candidates],
              size: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """[n, C]: RoIAlign 7x7 features of every chosen box from its FPN level (torchvision's `MultiScaleRoIAlign`,
    FPN's rule with canonical size 224 at level 4), averaged over the 7x7 cells, image after image; `size` is
    the images' (H, W)."""
    from torchvision.ops import MultiScaleRoIAlign

    finest = next(iter(levels.values()))  # [B, C, h, w]
    if len({v.shape[1] for v in levels.values()}) > 1:
        raise ValueError("detection features need a pyramid whose levels have equal channels (an FPN neck); "
                         "this model has none: build it with tasks.model.build_model or load_encoder")  # fmt: skip
    if sum(len(c.cls) for c in chosen) == 0:
        return finest.new_zeros((0, finest.shape[1]))
    pool = MultiScaleRoIAlign(list(levels), ROI_SIZE, ROI_SAMPLING)
    rois = [torch.from_numpy(c.box).to(finest.device, finest.dtype) for c in chosen]  # per image [n_b, 4]
    return pool(levels, rois, [size] * len(chosen)).mean(dim=(-2, -1))  # [n, C, 7, 7] -> [n, C]


_ROWS = {"segmentation": _point_rows, "depth": _point_rows, "detection": _box_rows, "keypoints": _point_rows}
_WHAT = {"segmentation": "labelled pixels", "depth": "valid depth pixels", "detection": "boxes",
         "keypoints": "labelled keypoints or background points"}  # fmt: skip


def proxy_features(model: nn.Module, data: torch.utils.data.Dataset, task: str, max_samples: int = 4096,
                   seed: int = 0, batch_size: int = 32, workers: int = 0) -> Features:  # fmt: skip
    """`model`'s frozen features on `data` for a `task` target, sampled with `seed`; see the module docstring.

    `model` has `.backbone` and optionally `.neck` (a `TaskModel` of any task type, or an `Encoder`); its head is
    never called. `data` is a map-style dataset of standard samples with an `info` (its `DatasetInfo`; depth
    needs none), read once through a DataLoader of `batch_size` with `workers` processes. At most `max_samples`
    rows: classes get max_samples // classes rows each at most (segmentation, detection, keypoints; classes
    with fewer candidates keep them all), depth samples max_samples pixels. The same (model, data, task,
    max_samples, seed) gives identical arrays. Raises EmptySplitError when fewer than 2 rows can be sampled
    (no labelled pixel, no valid depth, no box, no keypoint), ValueError on an unknown task type or a dataset
    without the labels or label space `task` needs.
    """
    if task not in _CANDIDATES:
        raise ValueError(f"unknown task type {task!r}; expected one of: {', '.join(TASK_TYPES)}")
    if max_samples < 2:
        raise ValueError(f"max_samples: expected at least 2, got {max_samples}")
    info = getattr(data, "info", None)
    name = getattr(info, "name", type(data).__name__)
    n_classes, ctx = _classes(task, info, name)
    sampler = _BottomK(max(1, max_samples // n_classes))
    candidates, rows = _CANDIDATES[task], _ROWS[task]
    device, was_training = _device(model), model.training
    pooled: list[torch.Tensor] = []
    model.eval()
    try:
        with torch.no_grad():
            start = 0
            for batch in eval_loader(data, batch_size, workers, device):
                if _LABELS[task] not in batch:
                    tasks = ", ".join(getattr(info, "tasks", ()) or ("unknown",))
                    raise ValueError(f"dataset {name!r} has no {_LABELS[task]!r} labels; expected a {task} dataset "
                                     f"(its task types: {tasks})")  # fmt: skip
                images = batch["image"].to(device)  # [B, 3, H, W]
                n, (h, w) = images.shape[0], images.shape[-2:]
                levels, strides = _pyramid(model, images)
                pooled.append(_pooled(levels))
                chosen, keys = [], []  # per image: the candidates that may still enter the sample, their keys
                for b in range(n):
                    cand = candidates(batch, b, dict(ctx, stride=strides[0], seed=seed, index=start + b))
                    key = np.random.default_rng([seed, start + b]).random(len(cand.cls))  # [n_cand] uniform
                    keep = sampler.worth(cand.cls, key)
                    chosen.append(cand.take(keep))
                    keys.append(key[keep])
                feats = rows(levels, strides, chosen, (h, w)).float().cpu().numpy()  # [sum n_b, C]
                ends = np.cumsum([len(k) for k in keys])
                for b, (c, k) in enumerate(zip(chosen, keys, strict=True)):
                    if len(k):
                        extra = {} if c.box is None else {"box": c.box / np.array([w, h, w, h], np.float32)}
                        sampler.add(c.cls, k, f=feats[ends[b] - len(k) : ends[b]], y=c.y, xy=c.xy,
                                    index=np.full(len(k), start + b, np.int64), **extra)  # fmt: skip
                start += n
    finally:
        model.train(was_training)
    kept = sampler.result()
    found = 0 if kept is None else len(kept["key"])
    if found < 2:
        raise EmptySplitError(f"dataset {name!r}: {found} {_WHAT[task]} to sample for {task} proxy features in "
                              f"{len(data)} images; proxies need at least 2")  # fmt: skip
    regression = task == "depth"
    return Features(task=task, f=kept["f"].astype(np.float32), regression=regression,
                    y=kept["y"].astype(np.float32 if regression else np.int64), index=kept["index"],
                    xy=kept["xy"].astype(np.float32), pooled=torch.cat(pooled).numpy(),
                    box=kept["box"].astype(np.float32) if "box" in kept else None)  # fmt: skip


def pooled_features(model: nn.Module, data: torch.utils.data.Dataset, max_images: int | None = None,
                    seed: int = 0, batch_size: int = 32, workers: int = 0) -> np.ndarray:  # fmt: skip
    """[n, P] float32: each image's globally averaged pyramid levels, concatenated (as `Features.pooled`).

    The label-free side of `domain_similarity`: `model`'s features on source-domain images. With `max_images`
    below len(data), a seeded subset of that many images (`domains.base.nested_subset`), else all, in order.
    """
    from domains.base import nested_subset

    if max_images is not None and max_images < len(data):
        data = Subset(data, nested_subset(len(data), max_images, seed))
    device, was_training = _device(model), model.training
    out: list[torch.Tensor] = []
    model.eval()
    try:
        with torch.no_grad():
            for batch in eval_loader(data, batch_size, workers, device):
                levels, _ = _pyramid(model, batch["image"].to(device))
                out.append(_pooled(levels))  # [B, P]
    finally:
        model.train(was_training)
    if not out:
        raise EmptySplitError(f"dataset {getattr(getattr(data, 'info', None), 'name', '?')!r}: no images to pool")
    return torch.cat(out).numpy().astype(np.float32)
