"""A procedural dataset: samples rendered on demand, deterministic per (dataset, split, index)."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import torch

from domains.base import DatasetInfo, Sample
from domains.synthetic.scenes import DOMAINS, VOCAB, Domain, blend_looks, render

SPLITS = {"train": 0, "val": 1, "test": 2}
MIXED = "mixed"  # a dataset drawing every sample from a domain chosen per index
TASKS = ("segmentation", "depth")


def domain_names() -> list[str]:
    """Domains a dataset may declare: every registered one, and `mixed`."""
    return [*DOMAINS.names(), MIXED]


class SyntheticDataset(torch.utils.data.Dataset):
    """`length` rendered scenes of `domain` at `image_size` px, in the standard sample form.

    A sample depends only on (name, seed, split, index): the same call in any
    process returns the same tensors. A `mixed` dataset picks each sample's
    domain from `mix` (all registered domains by default); its label space is
    the union of theirs. `blend=(other, fraction)` renders the same scenes
    with their look (texture, colour cast, haze, light, noise) moved that
    fraction of the way to `other`'s, for a known, tunable domain distance.
    """

    def __init__(self, name: str, domain: str, split: str, length: int, image_size: int,
                 seed: int = 0, mix: tuple[str, ...] = (), blend: tuple[str, float] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
        self.name, self.split, self.length, self.seed = name, split, length, seed
        if domain == MIXED:
            self.parts: list[Domain] = [DOMAINS.get(d)() for d in (mix or DOMAINS.names())]
        else:
            self.parts = [DOMAINS.get(domain)()]
        if blend is not None:  # appearance moved towards another domain's: a planted domain distance
            other, fraction = DOMAINS.get(blend[0])().look, float(blend[1])
            self.parts = [replace(p, look=blend_looks(p.look, other, fraction)) for p in self.parts]
        used = {c for part in self.parts for c in part.classes}
        classes = tuple(c for c in VOCAB if c in used)
        self.info = DatasetInfo(name=name, domain=domain, tasks=TASKS, classes=classes, image_size=image_size)
        lut = np.full(256, 255, np.int64)
        for local, cls in enumerate(classes):
            lut[VOCAB.index(cls)] = local
        self._to_local = lut
        self._entropy = [zlib.crc32(name.encode()), seed, SPLITS[split]]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}/{self.split}: index {index} out of range [0, {self.length})")
        rng = np.random.default_rng(np.random.SeedSequence([*self._entropy, index]))
        part = self.parts[rng.integers(len(self.parts))] if len(self.parts) > 1 else self.parts[0]
        rgb, cls, depth = render(part, rng, self.info.image_size)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),  # [3, H, W]
            "segmentation": torch.from_numpy(self._to_local[cls]),  # [H, W], 255 = ignore
            "depth": torch.from_numpy(depth),  # [H, W] metres, 0 = invalid
        }
