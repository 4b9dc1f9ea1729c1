"""The study spec: what to train, on what, and how; validated once, frozen.

    study = load_study("configs/demo.yaml")   # raises SpecError with one line on bad input

A study file lists only what differs from the defaults below. Unknown keys
and wrong types are errors; an error names the file, the field and what was
expected, e.g.

    configs/bad.yaml: datasets[0].domain: unknown domain 'forest'; expected one of: aerial, driving, ...

The loader and the error lines are domains/config.py's, shared with catalog files.

A study may also name a dataset catalog (`catalog: catalog.yaml`, relative to
the study file; see domains/catalog.py) and list its entries beside procedural
datasets: `- {catalog: cityscapes}` takes its domain and task types from the
entry (`name`, `tasks`, `train`, `val` and `role` may narrow them). The catalog
is read with the study, once: what a plan needs of each entry used, split sizes
included (counted on disk where neither file gives one), is recorded then
(`CatalogRecord`), so planning reads no file.

`multi_sources` declares sources trained on several of those datasets at once,
each drawn with a weight (MultiSourceSpec; docs/datasets.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator,
                      model_validator)  # fmt: skip

from domains import domain_names
from domains.catalog import CatalogError, Entry, load_catalog, missing_files
from domains.config import ConfigError, Name, Strict, TaskType, load_model, validate
from domains.synthetic.spaces import describe
from tasks import openmmlab
from tasks.backbone_names import check_backbone
from tasks.openmmlab import DEFAULT_DETECTOR, DEFAULT_SEGMENTOR

PositiveInt = Annotated[int, Field(gt=0)]


class SpecError(ConfigError):
    """Bad study input: the message is one line naming the file, the field and what was expected."""


def _check_domain(name: str) -> str:
    if name not in domain_names():
        raise ValueError(f"unknown domain {name!r}; expected one of: {', '.join(domain_names())}")
    return name


DomainName = Annotated[str, AfterValidator(_check_domain)]


class TrainSpec(Strict):
    """One training schedule (see tasks.train.Schedule)."""

    steps: PositiveInt
    batch_size: PositiveInt = 16
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    warmup: Annotated[float, Field(ge=0, lt=1)] = 0.1
    optimizer: Literal["adamw", "sgd"] = "adamw"
    decay: Literal["cosine", "poly"] = "cosine"
    clip_grad: Annotated[float, Field(ge=0)] = 1.0


class BlendSpec(Strict):
    """Move a dataset's look `fraction` of the way to another domain's: a planted domain distance."""

    domain: DomainName
    fraction: Annotated[float, Field(ge=0, le=1)]


class DatasetSpec(Strict):
    """A procedural dataset: `train` and `val` scenes of one image domain."""

    name: Name
    domain: DomainName
    role: Literal["both", "source", "target"] = "both"  # used as a source, a target, or both
    blend: BlendSpec | None = None
    train: PositiveInt = 400  # images in the train split (a source trains on all of them)
    val: PositiveInt = 64
    seed: int = 0
    tasks: tuple[TaskType, ...] | None = None  # task types used from it; default: the study's


class CatalogDatasetSpec(Strict):
    """A dataset from the study's catalog: its domain and task types come from the catalog entry."""

    catalog: Name  # the entry's name in the catalog
    name: Name | None = None  # the study's name for it (job names, tags); default: the entry's
    role: Literal["both", "source", "target"] = "both"
    train: PositiveInt | None = None  # images of its train split used; default: the split's size
    val: PositiveInt | None = None  # images of its val split evaluated on; default: the split's size
    tasks: tuple[TaskType, ...] | None = None  # default: the entry's task types that the study has

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("catalog"), str):
            data = {**data, "name": data["catalog"]}
        return data


# a study dataset is a catalog one when it names a catalog entry; the tags never show in messages (domains.config)
AnyDataset = Annotated[
    Annotated[DatasetSpec, Tag("procedural dataset")] | Annotated[CatalogDatasetSpec, Tag("catalog dataset")],
    Discriminator(lambda v: "catalog dataset" if (isinstance(v, dict) and "catalog" in v)
                  or isinstance(v, CatalogDatasetSpec) else "procedural dataset"),
]  # fmt: skip


Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class MultiSourceSpec(Strict):
    """A source trained on several of the study's datasets at once, each drawn with a weight (Mensink's multi-source).

        multi_sources:
          - {name: drive-sea, datasets: {city: 3, reef: 1}}    # 3/4 of the samples from city, 1/4 from reef
          - {name: all-driving, datasets: [city, town], tasks: [segmentation]}   # a list: equal weights

    `datasets` maps the study's dataset names (any role) to weights > 0, the
    fraction of training samples drawn from each (normalised); it trains on
    their whole train splits in one merged label space (domains/mixture.py)
    and is evaluated on their val splits. One source job per task type:
    `tasks`, default the study's task types that every one of its datasets has.
    It transfers onto every target except one of its own datasets with the
    same task type (it has seen that target's labels).
    """

    name: Name  # job names and the source_dataset tag; not a dataset's name
    datasets: dict[str, Weight]
    tasks: tuple[TaskType, ...] | None = None

    @field_validator("datasets", mode="before")
    @classmethod
    def _list_means_equal(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            twice = [n for i, n in enumerate(v) if n in v[:i]]
            if twice:
                raise ValueError(f"{twice[0]!r} is listed twice; expected each dataset once")
            return {n: 1.0 for n in v}
        return v

    @field_validator("datasets")
    @classmethod
    def _several(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) < 2:
            raise ValueError(f"{len(v)} dataset; expected at least two to mix (one is a plain source)")
        return v

    def weights(self) -> dict[str, float]:
        """Each dataset's share of the training samples (the weights, normalised to sum to 1)."""
        total = sum(self.datasets.values())
        return {name: w / total for name, w in self.datasets.items()}


class ModelSpec(Strict):
    """Choices inside the task models (see tasks/): which detector, which depth loss, what transfers.

    `backend: openmmlab` (the extra installed by `make openmmlab`; see
    tasks/openmmlab/) builds detection and segmentation heads from mmdet and
    mmseg configs named by `mm_detector` and `mm_segmentor` on the same shared
    backbone; depth and keypoints stay native.
    """

    detector: Literal["fcos", "retinanet", "faster_rcnn"] = "fcos"  # torchvision detector over the backbone + FPN
    depth_loss: Literal["log_l1", "scale_invariant"] = "log_l1"
    transfer_head: bool = False  # also move the head when task and label space match
    backend: Literal["native", "openmmlab"] = "native"  # who builds detection and segmentation heads
    mm_detector: str = DEFAULT_DETECTOR  # an mmdet config name (backend openmmlab), e.g. faster-rcnn_r50_fpn_1x_coco
    mm_segmentor: str = DEFAULT_SEGMENTOR  # an mmseg config name (backend openmmlab), e.g. segformer_mit-b0_8xb2-...

    @field_validator("backend")
    @classmethod
    def _extra_installed(cls, v: str) -> str:
        if v == "openmmlab" and not openmmlab.available():
            raise ValueError(f"{openmmlab.MISSING}; expected the extra installed for backend 'openmmlab', or 'native'")
        return v

    @field_validator("mm_detector", "mm_segmentor")
    @classmethod
    def _config_exists(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "openmmlab":  # only then are the configs there (and used)
            openmmlab.check_config("mmdet" if info.field_name == "mm_detector" else "mmseg", v)
        return v


class ResourceSpec(Strict):
    """What one job of a kind asks Ray for: CPUs and GPUs, fractions allowed (0.25 GPU: four jobs share one).

    `loader_workers`: the DataLoader processes that read and augment its data
    (default: one per CPU beyond the first, so num_cpus 1 reads in the job's own process).
    """

    num_cpus: Annotated[float, Field(gt=0)] = 1.0
    num_gpus: Annotated[float, Field(ge=0)] = 0.0
    loader_workers: Annotated[int, Field(ge=0, le=64)] | None = None

    @field_validator("num_gpus")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"{v} GPUs: above 1, expected a whole number (Ray shares only single GPUs)")
        return v


def _fewer_than_targets(i: int, ds: DatasetSpec | CatalogDatasetSpec, train: int | None, largest: int) -> str | None:
    """What is wrong with `datasets[i]` when it is a target whose training split (`train` images, None: not known
    yet) holds fewer than the largest target size; None when nothing is."""
    if ds.role != "source" and train is not None and train < largest:
        return (f"datasets[{i}].train: {train} images, fewer than the largest target size {largest}; "
                f"expected at least {largest}")  # fmt: skip
    return None


JobKind = Literal["pretrain", "source", "transfer", "baseline", "scratch", "reference", "proxy"]


class TunedSpec(Strict):
    """Finetuning values for one task type that override `finetune`: `tmx tune` writes lr and weight_decay; steps
    and batch_size are the study's own (a task type that needs a longer schedule, as keypoints do)."""

    lr: Annotated[float, Field(gt=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None


class PretrainSpec(Strict):
    """The generic init: one model trained on a mixture of domains (the stand-in for ImageNet)."""

    task: TaskType = "segmentation"
    domains: tuple[DomainName, ...] = ()  # mixed over; default: every registered domain
    train: PositiveInt = 800
    val: PositiveInt = 64
    seed: int = 0
    schedule: TrainSpec = TrainSpec(steps=300)


@dataclass(frozen=True)
class CatalogRecord:
    """A catalog entry as the study uses it, resolved when the study is read: planning reads nothing more."""

    name: str  # the entry's name in the catalog
    domain: str
    tasks: tuple[str, ...]  # the task types it has labels for
    digest: str  # its content hash: part of the key of every job using it
    entry: Entry  # the entry itself (frozen): where its files are, for `Study.missing_data`
    sizes: tuple[tuple[str, int], ...]  # (split, images): the catalog's size, else those on disk when read
    unknown: tuple[tuple[str, str], ...] = ()  # (split, why its size is not known: no size, and no files there)


@dataclass(frozen=True)
class ResolvedCatalog:
    """The study's catalog: its file (absolute), the root its paths start from, and a record per entry used."""

    file: Path
    root_dir: Path
    records: tuple[CatalogRecord, ...]

    def record(self, entry: str) -> CatalogRecord:
        return next(r for r in self.records if r.name == entry)


class ProxySpec(Strict):
    """Transferability proxies (analysis/proxies.py): for every transfer the study plans, a `proxy` job scores the
    source's frozen backbone on the target's training subset, at `samples` sampled feature vectors (pixels,
    boxes, keypoints), and compares `images` of the source's training images with the target's, without labels."""

    samples: Annotated[int, Field(ge=64, le=100_000)] = 2048
    images: Annotated[int, Field(ge=2, le=10_000)] = 64


class Study(Strict):
    name: Name
    output_dir: str | None = None  # default: outputs/<name>
    backbone: str = "test_resnet"  # a timm model name
    image_size: Annotated[int, Field(ge=16, le=1024)] = 64
    init: Literal["generic", "imagenet", "scratch"] = "generic"
    model: ModelSpec = ModelSpec()
    scratch: bool = True  # also finetune every target from a random init (what the init is worth)
    proxies: ProxySpec | None = None  # also score every transfer by transferability proxies ({} for the defaults)
    tasks: tuple[TaskType, ...] = ("segmentation", "depth")
    catalog: str | None = None  # dataset catalog file, relative to the study file (domains/catalog.py)
    datasets: tuple[AnyDataset, ...] = Field(min_length=1)
    multi_sources: tuple[MultiSourceSpec, ...] = ()  # sources trained on several datasets at once
    target_sizes: tuple[PositiveInt, ...] = (64,)
    seeds: tuple[int, ...] = (0,)
    subset_seed: int = 0  # draws each target's training subsets (nested across target_sizes) from its split
    source_seed: int = 0
    pretrain: PretrainSpec = PretrainSpec()
    source: TrainSpec = TrainSpec(steps=150)
    finetune: TrainSpec = TrainSpec(steps=60)
    finetune_by_task: dict[TaskType, TunedSpec] = {}  # per task type, over `finetune`; `tmx tune` writes it
    # accelerator-hours one job of each kind takes, for `tmx plan`'s cost estimate before any run
    estimates: dict[JobKind, Annotated[float, Field(ge=0)]] = {}
    # what each job of a kind asks Ray for (default: 1 CPU, no GPU), e.g. {transfer: {num_cpus: 4, num_gpus: 0.5}}
    resources: dict[JobKind, ResourceSpec] = {}
    _catalog: ResolvedCatalog | None = PrivateAttr(default=None)  # set once by parse_study and load_study

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        return check_backbone(v)

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        if not any(ds.role != "target" for ds in self.datasets) and not self.multi_sources:
            raise ValueError("datasets: every dataset has role 'target'; expected at least one source "
                             "(or a multi_sources entry)")
        if not any(ds.role != "source" for ds in self.datasets):
            raise ValueError("datasets: every dataset has role 'source'; expected at least one target")
        seen: set[str] = set()
        for i, ds in enumerate(self.datasets):
            if ds.name in seen:
                raise ValueError(f"datasets[{i}].name: {ds.name!r} is used twice; dataset names must be unique")
            seen.add(ds.name)
            if too_small := _fewer_than_targets(i, ds, ds.train, max(self.target_sizes)):
                raise ValueError(too_small)
        mixed: set[str] = set()
        for i, ms in enumerate(self.multi_sources):
            if ms.name in seen or ms.name in mixed:
                what = "a dataset's name" if ms.name in seen else "the name of an earlier multi-source"
                raise ValueError(f"multi_sources[{i}].name: {ms.name!r} is {what}; expected a name of its own")
            mixed.add(ms.name)
            for part in ms.datasets:
                if part not in seen:
                    raise ValueError(f"multi_sources[{i}].datasets: unknown dataset {part!r}; expected some of the "
                                     f"study's datasets: {', '.join(ds.name for ds in self.datasets)}")  # fmt: skip
        return self

    def finetune_for(self, task: str) -> dict[str, Any]:
        """The finetuning schedule of `task`'s targets: `finetune`, with `finetune_by_task[task]` over it."""
        tuned = self.finetune_by_task.get(task)
        return self.finetune.model_dump() | (tuned.model_dump(exclude_none=True) if tuned else {})

    def ray_resources(self) -> dict[str, dict[str, float]]:
        """What each job of a kind asks Ray for (matrix.scheduler.run_jobs' `resources`)."""
        return {kind: r.model_dump(include={"num_cpus", "num_gpus"}) for kind, r in self.resources.items()}

    def loader_workers(self, kind: str) -> int:
        """DataLoader worker processes for a job of `kind`: `resources.KIND.loader_workers`, else num_cpus - 1."""
        spec = self.resources.get(kind, ResourceSpec())
        return spec.loader_workers if spec.loader_workers is not None else max(0, int(spec.num_cpus) - 1)

    def dataset_tasks(self, ds: DatasetSpec | CatalogDatasetSpec) -> tuple[str, ...]:
        if ds.tasks is not None:
            return ds.tasks
        if isinstance(ds, CatalogDatasetSpec):
            return tuple(t for t in self.catalog_tasks(ds) if t in self.tasks)
        return self.tasks

    def dataset_named(self, name: str) -> DatasetSpec | CatalogDatasetSpec:
        return next(ds for ds in self.datasets if ds.name == name)

    def multi_source_tasks(self, ms: MultiSourceSpec) -> tuple[str, ...]:
        """`ms.tasks`, else the study's task types that every one of its datasets is used for (keypoints only
        if their keypoint schemas may be one: procedural ones are compared, those of data on disk are not known)."""
        if ms.tasks is not None:
            return ms.tasks
        used = [set(self.dataset_tasks(self.dataset_named(n))) for n in ms.datasets]
        shared = [t for t in self.tasks if all(t in u for u in used)]
        if "keypoints" in shared and _differing_keypoints(self, ms):
            shared.remove("keypoints")
        return tuple(shared)

    # -- catalog datasets (resolved once, when the study is read: nothing here reads the disk but missing_data) --

    @property
    def resolved_catalog(self) -> ResolvedCatalog | None:
        """The study's catalog as read with it (file, root, one record per entry used), or None without one."""
        return self._catalog

    def catalog_record(self, ds: CatalogDatasetSpec) -> CatalogRecord:
        return self._catalog.record(ds.catalog)

    def catalog_tasks(self, ds: CatalogDatasetSpec) -> tuple[str, ...]:
        return self.catalog_record(ds).tasks

    def dataset_domain(self, ds: DatasetSpec | CatalogDatasetSpec) -> str:
        return self.catalog_record(ds).domain if isinstance(ds, CatalogDatasetSpec) else ds.domain

    def split_size(self, ds: DatasetSpec | CatalogDatasetSpec, split: Literal["train", "val"]) -> int:
        """Images used from `split`: the study's count, else the catalog's declared size, else the images that
        were on disk when the study was read; SpecError when none of them is known."""
        given = getattr(ds, split)
        if given is not None:
            return given
        record = self.catalog_record(ds)
        sizes = dict(record.sizes)
        if split in sizes:
            return sizes[split]
        raise SpecError(f"datasets {ds.name!r}: cannot count its {split} images ({dict(record.unknown)[split]}); "
                        f"give {split}: N in the study or size: N in the catalog")  # fmt: skip

    def missing_data(self) -> dict[str, list[str]]:
        """Catalog datasets whose files are not on disk now: study dataset name -> ['PATH (what)', ...]."""
        out = {}
        for ds in self.datasets:
            if isinstance(ds, CatalogDatasetSpec):
                missing = missing_files(self.catalog_record(ds).entry, self._catalog.root_dir, ("train", "val"))
                if missing:
                    out[ds.name] = missing
        return out

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"outputs/{self.name}")


# -- loading ---------------------------------------------------------------------------------------


def parse_study(data: Any, source: str, base: str | Path | None = None) -> Study:
    """Validate a mapping (from `source`, for messages) into a frozen Study.

    A `catalog` is read relative to `base` (default: the folder of `source`),
    the study's catalog datasets are checked against it, and what a plan needs
    of them is recorded (`CatalogRecord`).
    """
    return _resolved(validate(data, Study, source, SpecError, "study"), source, base)


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML file; any problem raises SpecError (one line)."""
    return _resolved(load_model(path, Study, SpecError, "study"), str(path), None)


def _resolved(study: Study, source: str, base: str | Path | None) -> Study:
    _resolve_catalog(study, source, Path(base) if base is not None else Path(source).parent)
    _check_multi_sources(study, source)
    return study


def _check_multi_sources(study: Study, source: str) -> None:
    """Every multi-source's task types are ones all its datasets are used for; keypoints need one schema."""
    for i, ms in enumerate(study.multi_sources):
        used = {n: study.dataset_tasks(study.dataset_named(n)) for n in ms.datasets}
        have = ", ".join(f"{n}: {' '.join(t) or 'none'}" for n, t in used.items())
        tasks = study.multi_source_tasks(ms)
        if not tasks:
            raise SpecError(f"{source}: multi_sources[{i}]: its datasets share none of the study's task types "
                            f"({have}); expected at least one that all of them are used for")  # fmt: skip
        for task in tasks:
            lacking = [n for n, t in used.items() if task not in t]
            if lacking:
                raise SpecError(f"{source}: multi_sources[{i}].tasks: dataset {lacking[0]!r} is not used for "
                                f"{task!r} ({have}); expected task types all its datasets are used for")  # fmt: skip
        differ = _differing_keypoints(study, ms) if "keypoints" in tasks else ""
        if differ:
            raise SpecError(f"{source}: multi_sources[{i}].tasks: 'keypoints' needs one keypoint schema shared by "
                            f"all its datasets, and theirs differ ({differ}); expected datasets with the same "
                            f"keypoints, or no keypoints task")  # fmt: skip


def _differing_keypoints(study: Study, ms: MultiSourceSpec) -> str:
    """'' if `ms`'s procedural datasets have one keypoint schema, else what each has (for a message)."""
    schemas = {n: _keypoint_schema(study, study.dataset_named(n)) for n in ms.datasets}
    known = {n: k for n, k in schemas.items() if k != "?"}  # data on disk: the job checks it (Mixture.check_task)
    if len(set(known.values())) <= 1 and None not in known.values():
        return ""
    return ", ".join(f"{n}: {f'{k.category} with {len(k.names)} keypoints' if k else 'none'}" for n, k in known.items())


def _keypoint_schema(study: Study, ds: DatasetSpec | CatalogDatasetSpec) -> Any:
    """A procedural dataset's KeypointSchema (None: it has none); '?' for data on disk, whose schema
    comes from its COCO file (domains.mixture.Mixture.check_task tells the job then)."""
    if isinstance(ds, CatalogDatasetSpec):
        record = study.catalog_record(ds)
        if record.entry.procedural is None:
            return "?"
        return describe(ds.name, record.domain, record.entry.procedural.image_size).keypoints
    return describe(ds.name, ds.domain, study.image_size).keypoints  # its seed and blend change no label space


def _resolve_catalog(study: Study, source: str, base: Path) -> None:
    """Load the study's catalog, check every catalog dataset against its entry, and record what a plan needs
    of each entry (`CatalogRecord`): a split with no size in the study nor the catalog is counted on disk here,
    once (its files listed, none read)."""
    named = [(i, ds) for i, ds in enumerate(study.datasets) if isinstance(ds, CatalogDatasetSpec)]
    if study.catalog is None:
        if named:
            i, ds = named[0]
            raise SpecError(f"{source}: datasets[{i}].catalog: names catalog dataset {ds.catalog!r} but the study has "
                            f"no catalog; expected a top-level `catalog: FILE` (relative to the study file)")  # fmt: skip
        return
    try:
        catalog = load_catalog(base / study.catalog)
    except CatalogError as e:
        raise SpecError(str(e)) from None
    largest = max(study.target_sizes)
    for i, ds in named:
        if ds.catalog not in catalog.datasets:
            raise SpecError(f"{source}: datasets[{i}].catalog: unknown catalog dataset {ds.catalog!r} in "
                            f"{catalog.file}; expected one of: {', '.join(sorted(catalog.datasets))}")  # fmt: skip
        entry = catalog.get(ds.catalog)
        have = catalog.tasks(ds.catalog)
        for task in ds.tasks or ():
            if task not in have:
                raise SpecError(f"{source}: datasets[{i}].tasks: {ds.catalog!r} has no {task!r} labels; expected "
                                f"some of its task types: {', '.join(have)}")  # fmt: skip
        if ds.tasks is None and not any(t in study.tasks for t in have):
            raise SpecError(f"{source}: datasets[{i}]: {ds.catalog!r} has task types {', '.join(have)}, none of the "
                            f"study's ({', '.join(study.tasks)}); expected at least one in common")  # fmt: skip
        for split in ("train", "val"):
            if split not in entry.splits:
                raise SpecError(f"{source}: datasets[{i}]: catalog dataset {ds.catalog!r} has no {split!r} split in "
                                f"{catalog.file}; expected train and val splits")  # fmt: skip
        if too_small := _fewer_than_targets(i, ds, ds.train or entry.splits["train"].size, largest):
            raise SpecError(f"{source}: {too_small}")
    records = []
    for name in dict.fromkeys(ds.catalog for _, ds in named):
        entry = catalog.get(name)
        sizes, unknown = {}, {}
        for split in ("train", "val"):
            if entry.splits[split].size is None and all(getattr(ds, split) is not None for _, ds in named
                                                        if ds.catalog == name):  # fmt: skip
                continue  # every study dataset on it says how many images it uses
            try:
                sizes[split] = catalog.count(name, split)
            except ValueError as e:  # CatalogError or DataError: the data is not there
                unknown[split] = str(e)
        records.append(CatalogRecord(name, entry.domain, catalog.tasks(name), entry.digest(), entry,
                                     tuple(sizes.items()), tuple(unknown.items())))  # fmt: skip
    study._catalog = ResolvedCatalog(catalog.file.resolve(), catalog.root_dir, tuple(records))
