"""What a procedural dataset declares before rendering anything: domain names, task types, label spaces.

    describe("city", "driving", 64).keypoints      # the KeypointSchema its samples will have (or None)
    domain_names()                                  # what a study or catalog may name: the domains and `mixed`

Imports no torch: the study spec and the catalog check names and read label
spaces here; SyntheticDataset (dataset.py) builds its `info` with `describe`.
"""

from __future__ import annotations

from domains.base import DatasetInfo, KeypointSchema
from domains.synthetic.scenes import DOMAINS, VOCAB, Domain

MIXED = "mixed"  # a dataset drawing every sample from a domain chosen per index
PROCEDURAL_TASKS = ("segmentation", "depth", "detection", "keypoints")  # what a procedural dataset has labels for


def domain_names() -> list[str]:
    """Domains a dataset may declare: every registered one, and `mixed`."""
    return [*DOMAINS.names(), MIXED]


def domain_parts(domain: str, mix: tuple[str, ...] = ()) -> list[Domain]:
    """The domains a dataset's samples come from: `domain`, or for `mixed` those of `mix` (default: all)."""
    if domain == MIXED:
        return [DOMAINS.get(d)() for d in (mix or DOMAINS.names())]
    return [DOMAINS.get(domain)()]


def _shared_schema(parts: list[Domain], things: tuple[str, ...]) -> KeypointSchema | None:
    """The keypoint schema every part shares (its class among `things`), or None."""
    schemas = {p.keypoints if p.keypoints and p.keypoints.category in things else None for p in parts}
    return schemas.pop() if len(schemas) == 1 else None


def describe(name: str, domain: str, image_size: int, mix: tuple[str, ...] = (),
             things: tuple[str, ...] | None = None) -> DatasetInfo:  # fmt: skip
    """The DatasetInfo of a procedural dataset (see SyntheticDataset): its label spaces are the union of its
    domains' (restricted to `things` when given), with keypoints only if all its domains share one schema."""
    parts = domain_parts(domain, mix)
    available = {t for p in parts for t in p.things}
    if things is not None:
        unknown = sorted(set(things) - available)
        if unknown or not things:
            raise ValueError(f"things {tuple(things)!r} of dataset {name!r}: expected a non-empty subset of "
                             f"{', '.join(c for c in VOCAB if c in available)}")  # fmt: skip
        available = set(things)
    used = {c for p in parts for c in p.classes if c not in p.things or c in available}
    classes = tuple(c for c in VOCAB if c in used)
    thing_space = tuple(c for c in VOCAB if c in available)
    schema = _shared_schema(parts, thing_space)
    tasks = PROCEDURAL_TASKS if schema is not None else tuple(t for t in PROCEDURAL_TASKS if t != "keypoints")
    return DatasetInfo(name=name, domain=domain, tasks=tasks, classes=classes, image_size=image_size,
                       things=thing_space, keypoints=schema)  # fmt: skip
