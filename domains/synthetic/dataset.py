"""A procedural dataset: samples rendered on demand, deterministic per (dataset, seed, split, index)."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import torch

from domains.base import Sample
from domains.synthetic.scenes import DOMAINS, VOCAB, blend_looks, render_scene
from domains.synthetic.spaces import describe, domain_parts

SPLITS = {"train": 0, "val": 1, "test": 2}


class SyntheticDataset(torch.utils.data.Dataset):
    """`length` rendered scenes of `domain` at `image_size` px, in the standard sample form.

        SyntheticDataset("city", "driving", "train", 100, 64, seed=0, things=("vehicle",))

    Each sample has every label of one scene: image, segmentation, depth, and
    for each object instance its box, label and keypoints. A sample depends
    only on the dataset's definition and (name, seed, split, index): the same
    call in any process returns the same tensors.

    A `mixed` dataset picks each sample's domain from `mix` (all registered
    domains by default); its label spaces are the union of theirs, and it has
    keypoints only if all its domains share one keypoint schema.
    `blend=(other, fraction)` renders the same scenes with their look
    (texture, colour cast, haze, light, noise) moved that fraction of the way
    to `other`'s, for a known, tunable domain distance. `things` restricts the
    object classes drawn (and so the label spaces) to a subset of the
    domains' things; None draws them all.

    `ids` names each sample ("train/0", ...); jobs read a rendered split once
    from the decoded-sample cache (domains/cache.py).
    """

    def __init__(self, name: str, domain: str, split: str, length: int, image_size: int,
                 seed: int = 0, mix: tuple[str, ...] = (), blend: tuple[str, float] | None = None,
                 *, things: tuple[str, ...] | None = None) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
        self.name, self.split, self.length, self.seed = name, split, length, seed
        self.info = describe(name, domain, image_size, mix, things)
        self.parts = domain_parts(domain, mix)
        if blend is not None:  # appearance moved towards another domain's: a planted domain distance
            other, fraction = DOMAINS.get(blend[0])().look, float(blend[1])
            self.parts = [replace(p, look=blend_looks(p.look, other, fraction)) for p in self.parts]
        self._allowed = frozenset(self.info.things) if things is not None else None
        self._to_local = self._lut(self.info.classes)
        self._to_thing = self._lut(self.info.things)
        self._entropy = [zlib.crc32(name.encode()), seed, SPLITS[split]]

    @staticmethod
    def _lut(names: tuple[str, ...]) -> np.ndarray:
        lut = np.full(256, 255, np.int64)  # VOCAB id -> local id; 255 stays 255 (ignore)
        for local, cls in enumerate(names):
            lut[VOCAB.index(cls)] = local
        return lut

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}/{self.split}: index {index} out of range [0, {self.length})")
        return self.render(index)

    @property
    def ids(self) -> list[str]:
        return [f"{self.split}/{i}" for i in range(self.length)]

    def render(self, index: int) -> Sample:
        """Render sample `index` (no cache): a function of (name, seed, split, index) and the definition only."""
        rng = np.random.default_rng(np.random.SeedSequence([*self._entropy, index]))
        part = self.parts[rng.integers(len(self.parts))] if len(self.parts) > 1 else self.parts[0]
        scene = render_scene(part, rng, self.info.image_size, self._allowed)
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1))),  # [3, H, W]
            "segmentation": torch.from_numpy(self._to_local[scene.classes]),  # [H, W], 255 = ignore
            "depth": torch.from_numpy(scene.depth),  # [H, W] metres, 0 = invalid
            "boxes": torch.from_numpy(scene.boxes).reshape(-1, 4),  # [N, 4] xyxy pixels
            "labels": torch.from_numpy(self._to_thing[scene.labels]),  # [N], ids into info.things
        }
        schema = self.info.keypoints
        if schema is not None:  # [N, K, 3]; visibility 0 for objects of other classes
            kps = scene.keypoints if part.keypoints == schema else np.zeros((len(scene.ids), len(schema.names), 3))
            sample["keypoints"] = torch.from_numpy(np.ascontiguousarray(kps, np.float32))
        return sample
