"""The standard sample form every dataset yields, and what a dataset declares about itself.

A sample is a dict of tensors (a dataset yields the keys of the task types it has):
    image         float32 [3, H, W] in [0, 1]
    segmentation  int64 [H, W], ids into `DatasetInfo.classes`, 255 = ignore
    depth         float32 [H, W] metres, 0 = invalid
    boxes         float32 [N, 4] xyxy pixels, one row per object instance
    labels        int64 [N], ids into `DatasetInfo.things`
    keypoints     float32 [N, K, 3] (x, y, visibility), K = len(DatasetInfo.keypoints.names);
                  COCO visibility: 0 = not labelled (outside the image, or the
                  object's class has no keypoints), 1 = labelled but occluded,
                  2 = visible
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: what reads a config imports none
    import torch

Sample = dict[str, "torch.Tensor"]
IGNORE = 255
DENSE = ("image", "segmentation", "depth")  # per-pixel keys: [.., H, W]
INSTANCE = ("boxes", "labels", "keypoints")  # per-object keys: [N, ...], N varies per sample


@dataclass(frozen=True)
class KeypointSchema:
    """The keypoints of one object class: names, skeleton edges, left/right pairs, OKS sigmas."""

    category: str  # the entry of `DatasetInfo.things` these keypoints belong to
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()  # edges between keypoint indices (drawing only)
    flip_pairs: tuple[tuple[int, int], ...] = ()  # indices swapped by a horizontal flip
    sigmas: tuple[float, ...] = ()  # per-keypoint OKS sigmas; empty = 0.05 each

    def oks_sigmas(self) -> tuple[float, ...]:
        return self.sigmas or (0.05,) * len(self.names)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    domain: str
    tasks: tuple[str, ...]  # task types it has labels for
    classes: tuple[str, ...]  # semantic label space (segmentation ids)
    image_size: int
    things: tuple[str, ...] = ()  # detection label space (`labels` ids): classes with instances
    keypoints: KeypointSchema | None = None  # schema of `keypoints`, when the dataset has them


def nested_subset(pool: int, count: int, seed: int) -> list[int]:
    """`count` of the indices 0..pool-1, drawn at random with `seed`, sorted; all of them when count == pool.

    The subsets of one (pool, seed) are nested: the 150-image subset lies inside
    the 1,000-image one (Mensink et al.), because both are the first indices of
    one seeded permutation.
    """
    if not 0 < count <= pool:
        raise ValueError(f"a subset of {count} from {pool} samples; expected 1 to {pool}")
    if count == pool:
        return list(range(pool))
    import torch

    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:count].tolist())
