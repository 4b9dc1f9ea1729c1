"""From a study to its job DAG: pretrain -> sources -> transfers, and a baseline per target.

    jobs = plan(study)       # topological order: every job after its upstream

A job is a pure description. Its `key` hashes everything that determines its
result, its upstream job's key included, so a changed source changes the keys
of every transfer built on it, and an unchanged job keeps its key across runs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, get_args

from domains import MIXED
from matrix.spec import CatalogDatasetSpec, DatasetSpec, JobKind, Study

PROTOCOL = 3  # bump when the meaning of a job changes, so old results are not reused
PROXY_FEATURES = 2  # part of a proxy job's key: bump when what tasks/features.py samples changes (2: detection's
# background boxes), so old proxy runs are not reused and no other job's key changes
Kind = JobKind  # what a job does (the study file names them too: estimates, resources)
KINDS: tuple[Kind, ...] = get_args(Kind)  # in the order jobs run and are listed


@dataclass(frozen=True)
class DataRef:
    """`count` samples of `split` of one procedural dataset, or of a catalog dataset.

    The samples are a random subset of the split drawn with `subset_seed`
    (domains.base.nested_subset: the subsets of smaller target sizes lie inside
    the larger ones), or the whole split when `count` is its size. A procedural
    split has `pool` samples; a catalog split has the images on disk. A catalog dataset's ref carries (entry name, entry content hash) in `catalog`, part of
    the job key, and the catalog file's absolute path in `catalog_file`, which is not: a
    moved study or catalog keeps its keys, an edited entry changes them.

    A mixture (a multi-source's data) has `parts`: (ref, weight) pairs, each
    ref a whole split of one dataset, the weights summing to 1; it names
    `count` samples drawn from them with those weights, with `subset_seed`
    (domains/mixture.py). Its `dataset` is the multi-source's name, its domain
    the parts' one if they share it, else `mixed`.
    """

    dataset: str
    domain: str
    seed: int
    split: str
    count: int
    mix: tuple[str, ...] = ()
    blend: tuple[str, float] | None = None  # (domain, fraction) its look is moved towards
    catalog: tuple[str, str] | None = None  # (catalog entry, its content hash) for a catalog dataset
    catalog_file: str | None = None  # where that catalog is (not part of the key)
    pool: int | None = None  # a procedural split's size (a catalog split's is what is on disk)
    subset_seed: int = 0  # draws the `count` samples from the split
    parts: tuple[tuple[DataRef, float], ...] = ()  # a mixture's (ref, weight) pairs; empty for one dataset

    @property
    def domain_label(self) -> str:
        """The domain the analysis sees: a blended dataset is a domain of its own."""
        return self.domain if self.blend is None else f"{self.domain}+{self.blend[0]}@{self.blend[1]:g}"

    @staticmethod
    def mixture(name: str, parts: tuple[tuple[DataRef, float], ...], count: int, subset_seed: int) -> DataRef:
        """`count` samples drawn from `parts` with their weights (see above); one split of each part."""
        labels = {ref.domain_label for ref, _ in parts}
        first = parts[0][0]
        domain, blend = (first.domain, first.blend) if len(labels) == 1 else (MIXED, None)
        return DataRef(name, domain, 0, first.split, count, blend=blend, subset_seed=subset_seed, parts=parts)


def _key_content(ref: dict[str, Any]) -> dict[str, Any]:
    """A DataRef (as a dict) as it enters a job key: without `catalog_file`, nor `catalog` and `parts` when unset,
    so a moved catalog keeps its keys and procedural refs keep the keys they always had."""
    out = {k: v for k, v in ref.items() if k != "catalog_file"}
    if out["catalog"] is None:
        del out["catalog"]
    if out["parts"]:
        out["parts"] = [[_key_content(part), weight] for part, weight in out["parts"]]
    else:
        del out["parts"]
    return out


@dataclass(frozen=True)
class Source:
    """What a backbone was trained on before a job starts from it."""

    dataset: str
    domain: str
    task: str
    size: int  # training images
    domains: tuple[str, ...]  # image domains it covers (several for a mixed dataset or a multi-source)
    datasets: tuple[str, ...]  # the datasets it was trained on (several for a multi-source)

    @property
    def multi(self) -> bool:
        return len(self.datasets) > 1


@dataclass(frozen=True)
class Job:
    kind: Kind
    task: str  # the task type trained and evaluated
    train: DataRef
    eval: DataRef
    schedule: dict[str, Any]  # TrainSpec fields
    seed: int
    init: str  # the study's init: generic, imagenet or scratch
    backbone: str
    image_size: int
    upstream: str | None  # key of the job whose backbone this one starts from
    source: Source | None = None  # for source and transfer jobs: the source (dataset, task)
    model: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields
    loader_workers: int = field(default=0, compare=False)  # DataLoader processes (not part of the key)
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        content = {k: v for k, v in asdict(self).items() if k not in ("key", "loader_workers")}
        content["protocol"] = PROTOCOL
        content["train"], content["eval"] = _key_content(content["train"]), _key_content(content["eval"])
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=list).encode()).hexdigest()
        object.__setattr__(self, "key", digest[:20])

    @property
    def name(self) -> str:
        target = f"{self.train.dataset}/{self.task}"
        if self.kind in ("transfer", "proxy"):
            return f"{self.kind} {self.source.dataset}/{self.source.task} -> {target} n={self.train.count} seed={self.seed}"
        if self.kind == "baseline":
            return f"baseline {self.init} -> {target} n={self.train.count} seed={self.seed}"
        if self.kind in ("scratch", "reference"):
            return f"{self.kind} -> {target} n={self.train.count} seed={self.seed}"
        if self.train.parts:  # a multi-source: what it mixes
            mix = " + ".join(f"{ref.dataset} {weight:.0%}" for ref, weight in self.train.parts)
            return f"{self.kind} {target} ({mix})"
        return f"{self.kind} {target}"

    def tags(self, study: str) -> dict[str, str]:
        """The run tags every job carries (the analysis joins on them)."""
        src = self.source
        return {
            "study": study,
            "kind": self.kind,
            "job_key": self.key,
            "upstream_key": self.upstream or "none",
            "source_dataset": src.dataset if src else "none",
            "source_domain": src.domain if src else "none",
            "source_task": src.task if src else "none",
            "source_size": str(src.size) if src else "none",
            "source_domains": ",".join(src.domains) if src else "none",
            "source_datasets": ",".join(src.datasets) if src else "none",
            "multi_source": str(src.multi).lower() if src else "false",
            "target_dataset": self.train.dataset,
            "target_domain": self.train.domain_label,
            "target_task": self.task,
            "target_size": str(self.train.count),
            "seed": str(self.seed),
            "init": self.init,
        }


def _ref(study: Study, ds: DatasetSpec | CatalogDatasetSpec, split: str, count: int, whole: int) -> DataRef:
    """`count` of the `whole` images of `split` (all of them: the same whatever the subset seed)."""
    subset_seed = 0 if count == whole else study.subset_seed
    if isinstance(ds, CatalogDatasetSpec):
        record = study.catalog_record(ds)
        return DataRef(ds.name, record.domain, 0, split, count, catalog=(ds.catalog, record.digest),
                       catalog_file=str(study.resolved_catalog.file), subset_seed=subset_seed)  # fmt: skip
    blend = (ds.blend.domain, ds.blend.fraction) if ds.blend else None
    return DataRef(ds.name, ds.domain, ds.seed, split, count, blend=blend, pool=getattr(ds, split),
                   subset_seed=subset_seed)  # fmt: skip


def plan(study: Study) -> list[Job]:
    """Every job of `study`, each after its upstream: a pure function of the study, which reads no file
    (what it needs of a catalog was recorded when the study was read, matrix.spec.CatalogRecord).

    Transfers onto the identical (dataset, task) are excluded, and so are a
    multi-source's transfers onto any of its datasets with the same task type:
    a source never finetunes onto a target whose training labels it has seen.
    """
    common = {"init": study.init, "backbone": study.backbone, "image_size": study.image_size,
              "model": study.model.model_dump()}  # fmt: skip
    jobs: list[Job] = []
    root: Job | None = None
    if study.init == "generic":
        pt = study.pretrain
        mix = pt.domains
        root = Job(
            kind="pretrain", task=pt.task,
            train=DataRef(f"{study.name}-pretrain", MIXED, pt.seed, "train", pt.train, mix, pool=pt.train),
            eval=DataRef(f"{study.name}-pretrain", MIXED, pt.seed, "val", pt.val, mix, pool=pt.val),
            schedule=pt.schedule.model_dump(), seed=pt.seed, upstream=None, **common,
        )  # fmt: skip
        jobs.append(root)
    root_key = root.key if root else None

    pairs = [(ds, task) for ds in study.datasets for task in study.dataset_tasks(ds)]
    # images used from each split (SpecError for a catalog split whose size is not known)
    sizes = {(ds.name, split): study.split_size(ds, split) for ds in {ds.name: ds for ds, _ in pairs}.values()
             for split in ("train", "val")}  # fmt: skip

    def ref(ds: DatasetSpec | CatalogDatasetSpec, split: str, count: int | None = None) -> DataRef:
        whole = sizes[(ds.name, split)]
        return _ref(study, ds, split, whole if count is None else count, whole)

    sources = {}
    for ds, task in pairs:
        if ds.role == "target":
            continue
        train = ref(ds, "train")
        src = Job(
            kind="source", task=task, train=train, eval=ref(ds, "val"),
            schedule=study.source.model_dump(), seed=study.source_seed, upstream=root_key,
            source=Source(ds.name, train.domain_label, task, train.count, (train.domain_label,), (ds.name,)),
            **common,
        )  # fmt: skip
        sources[(ds.name, task)] = src
        jobs.append(src)

    for ms in study.multi_sources:  # trained on the whole train splits of its datasets, drawn with its weights
        named = [study.dataset_named(n) for n in ms.datasets]
        weights = ms.weights()
        train_parts = tuple((ref(ds, "train"), weights[ds.name]) for ds in named)
        total = sum(r.count for r, _ in train_parts)
        val = [ref(ds, "val") for ds in named]
        val_total = sum(r.count for r in val)
        # the source's seed draws its table; it is evaluated on all of their val splits, each sample once
        # (weights proportional to the splits' sizes)
        train = DataRef.mixture(ms.name, train_parts, total, study.source_seed)
        evaluate = DataRef.mixture(ms.name, tuple((r, r.count / val_total) for r in val), val_total, 0)
        domains = tuple(sorted({r.domain_label for r, _ in train_parts}))
        for task in study.multi_source_tasks(ms):
            src = Job(
                kind="source", task=task, train=train, eval=evaluate,
                schedule=study.source.model_dump(), seed=study.source_seed, upstream=root_key,
                source=Source(ms.name, train.domain_label, task, total, domains, tuple(ms.datasets)), **common,
            )  # fmt: skip
            sources[(ms.name, task)] = src
            jobs.append(src)

    for size in study.target_sizes:
        for seed in study.seeds:
            for ds, task in pairs:
                if ds.role == "source":
                    continue
                target = {"task": task, "train": ref(ds, "train", size), "eval": ref(ds, "val"),
                          "schedule": study.finetune_for(task), "seed": seed, **common}  # fmt: skip
                jobs.append(Job(kind="baseline", upstream=root_key, **target))
                # what a trivial predictor fitted on the same subset scores: the baseline must beat it
                jobs.append(Job(kind="reference", upstream=None, **(target | {"schedule": {}})))
                if study.scratch and study.init != "scratch":
                    jobs.append(Job(kind="scratch", upstream=None, **(target | {"init": "scratch"})))
                for (_, src_task), src in sources.items():
                    if src_task == task and ds.name in src.source.datasets:  # it has seen this target's labels
                        continue
                    jobs.append(Job(kind="transfer", upstream=src.key, source=src.source, **target))
                    if study.proxies is not None:  # the source's frozen backbone scored on the same subset; it
                        # compares the target's images with the source's own training images (its `eval`)
                        scoring = study.proxies.model_dump() | {"features": PROXY_FEATURES}
                        jobs.append(Job(kind="proxy", upstream=src.key, source=src.source,
                                        **(target | {"eval": src.train, "schedule": scoring})))  # fmt: skip
    return [replace(job, loader_workers=study.loader_workers(job.kind)) for job in jobs]


def count_by_kind(jobs: list[Job]) -> dict[str, int]:
    counts = Counter(j.kind for j in jobs)
    return {k: counts[k] for k in KINDS if counts[k]}
