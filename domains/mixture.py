"""Several datasets as one, each drawn with a weight, in one label space: what a multi-source trains on.

    mix = Mixture("drive-sea", [("city", city), ("reef", reef)], weights=(1.0, 1.0))
    len(mix), mix[i], mix.info, mix.ids     # a map-style dataset like any other
    mix.table                               # [len, 2] int32: (part, index within the part) of each sample
    mix.fractions                           # {part name: share of the table}

Each part is a map-style dataset of standard samples with an `info` and `ids`
(a `tasks.data.Subset` of a cached split, a SyntheticDataset, ...).

Weights are the fraction of the samples drawn from each part: the mixture is
a fixed table of `length` entries (default: the parts' total size) in which
part p fills round(length * w_p / sum(w)) entries, spread over its samples as
evenly as a whole number allows (every sample k or k + 1 times, the extra
ones drawn with `seed`), in an order shuffled with `seed` (so any prefix of
the table is a weighted sample too). A uniform shuffle over the table, which
is what the training loop does (tasks.data.StepBatches), thus draws from each
part with its weight; and with weights proportional to the parts' sizes
every sample is in the table once (how a multi-source's validation splits are
joined). The table depends only on (sizes, weights, length, seed): the same
in every process. A pickled mixture (what DataLoader workers receive)
carries only its parts and that table.

Label spaces are merged: `classes` and `things` are the union of the parts',
names in `domains.VOCAB` first in VOCAB order, then the others in the order
first seen; each part's segmentation ids and detection labels are remapped
into it (255 stays ignore). The mixture has the task types every part has;
keypoints only when every part has the same keypoint schema (`check_task`
says why a task type is missing). `info.domain` is the parts' domain when they
share one, else `mixed`. A sample carries the image and the labels of those
task types only, so samples from different parts collate together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from domains.base import IGNORE, DatasetInfo, Sample
from domains.synthetic.spaces import MIXED
from domains.synthetic.scenes import VOCAB

FIELDS = {"segmentation": ("segmentation",), "depth": ("depth",), "detection": ("boxes", "labels"),
          "keypoints": ("boxes", "labels", "keypoints")}  # fmt: skip  (the sample keys of each task type)


def union(spaces: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The names of every space: those in VOCAB in VOCAB order, then the others in the order first seen."""
    seen = list(dict.fromkeys(name for space in spaces for name in space))
    known = sorted((n for n in seen if n in VOCAB), key=VOCAB.index)
    return (*known, *(n for n in seen if n not in VOCAB))


def allocate(sizes: Sequence[int], weights: Sequence[float], length: int, seed: int = 0) -> np.ndarray:
    """The mixture table: [length, 2] int32 rows (part, index within the part), in a seeded random order.

    Part p gets round(length * w_p / sum(w)) rows (largest remainders, ties to
    the earlier part); within it every sample appears k or k + 1 times, the
    ones that appear once more drawn without replacement. One generator seeded
    with `seed` draws those, part after part, then the order.
    """
    w = np.asarray(weights, float)
    if len(w) != len(sizes) or not len(w) or not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError(f"weights {tuple(weights)} for {len(sizes)} parts; expected one finite weight > 0 per part")
    if min(sizes) <= 0 or length <= 0:
        raise ValueError(f"parts of sizes {tuple(sizes)} drawn {length} times; expected non-empty parts and length")
    quota = length * w / w.sum()
    counts = np.floor(quota + 1e-9).astype(int)  # + 1e-9: a quota of 6.9999999 (7 after rounding errors) is 7
    extra, order = length - counts.sum(), np.argsort(-(quota - counts), kind="stable")
    if extra >= 0:  # the largest remainders get one more
        counts[order[:extra]] += 1
    else:  # rounding errors took one too many: the smallest give it back
        counts[order[extra:]] -= 1
    rng = np.random.default_rng(seed)
    rows = []
    for p, (size, n) in enumerate(zip(sizes, counts, strict=True)):
        whole, rest = divmod(int(n), int(size))
        index = np.concatenate([np.tile(np.arange(size), whole), rng.choice(size, rest, replace=False)])
        rows.append(np.stack([np.full(len(index), p), index], 1))
    table = np.concatenate(rows)
    return table[rng.permutation(len(table))].astype(np.int32)


def _lut(own: Sequence[str], merged: Sequence[str]) -> torch.Tensor:
    """Part id -> merged id over 0..255; ids the part does not name, and 255, map to 255 (ignore)."""
    if len(merged) >= IGNORE:
        raise ValueError(f"{len(merged)} classes in one label space; expected fewer than {IGNORE}")
    lut = torch.full((256,), IGNORE, dtype=torch.int64)
    for i, name in enumerate(own):
        lut[i] = merged.index(name)
    return lut


class Mixture(torch.utils.data.Dataset):
    """`parts` ((name, dataset) pairs) drawn with `weights` into one dataset of `length` samples; see the module."""

    def __init__(self, name: str, parts: Sequence[tuple[str, torch.utils.data.Dataset]], weights: Sequence[float],
                 length: int | None = None, seed: int = 0) -> None:  # fmt: skip
        if len(parts) < 1:
            raise ValueError(f"mixture {name!r}: no parts; expected at least one dataset")
        self.name = name
        self.names = [n for n, _ in parts]
        self.parts = [d for _, d in parts]
        infos: list[DatasetInfo] = [d.info for d in self.parts]
        sizes = [len(d) for d in self.parts]
        self.table = allocate(sizes, weights, sum(sizes) if length is None else length, seed)
        self.missing: dict[str, str] = {}  # task type -> why the mixture lacks it
        tasks = []
        for task in dict.fromkeys(t for i in infos for t in i.tasks):
            without = [n for n, i in zip(self.names, infos, strict=True) if task not in i.tasks]
            if without:
                self.missing[task] = f"part {without[0]!r} has no {task} labels"
            else:
                tasks.append(task)
        if "keypoints" in tasks and len({i.keypoints for i in infos}) > 1:
            tasks.remove("keypoints")
            kinds = ", ".join(f"{n}: {i.keypoints.category if i.keypoints else 'none'}"
                              for n, i in zip(self.names, infos, strict=True))  # fmt: skip
            self.missing["keypoints"] = f"its parts have different keypoint schemas ({kinds})"
        classes = union([i.classes for i in infos])
        things = union([i.things for i in infos])
        domains = {i.domain for i in infos}
        self.info = DatasetInfo(name=name, domain=domains.pop() if len(domains) == 1 else MIXED, tasks=tuple(tasks),
                                classes=classes, image_size=infos[0].image_size, things=things,
                                keypoints=infos[0].keypoints if "keypoints" in tasks else None)  # fmt: skip
        self.fields = ("image", *dict.fromkeys(f for t in tasks for f in FIELDS.get(t, (t,))))
        self._classes = [_lut(i.classes, classes) for i in infos]
        self._things = [_lut(i.things, things) for i in infos]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.table):
            raise IndexError(f"mixture {self.name}: index {index} out of range [0, {len(self.table)})")
        part, within = (int(v) for v in self.table[index])
        sample = self.parts[part][within]
        out = {k: sample[k] for k in self.fields}
        if "segmentation" in out:
            out["segmentation"] = self._classes[part][out["segmentation"]]  # [H, W], 255 stays 255
        if "labels" in out:
            out["labels"] = self._things[part][out["labels"]]  # [N]
        return out

    @property
    def ids(self) -> list[str]:
        """`PART/ID` of each sample, in table order (a sample drawn twice is named twice)."""
        own = [getattr(d, "ids", None) for d in self.parts]
        return [f"{self.names[p]}/{own[p][i] if own[p] is not None else i}" for p, i in self.table.tolist()]

    @property
    def fractions(self) -> dict[str, float]:
        """The share of the table each part fills."""
        counts = np.bincount(self.table[:, 0], minlength=len(self.parts))
        return {n: float(c) / len(self.table) for n, c in zip(self.names, counts, strict=True)}

    def check_task(self, task: str) -> None:
        """Raise ValueError saying why the mixture cannot train `task`, if it cannot."""
        if task not in self.info.tasks:
            why = self.missing.get(task, f"no part has {task} labels")
            raise ValueError(f"mixture {self.name!r} ({', '.join(self.names)}): no {task} labels: {why}; "
                             f"expected parts that all have {task} labels"
                             + (" with one keypoint schema" if task == "keypoints" else ""))  # fmt: skip

