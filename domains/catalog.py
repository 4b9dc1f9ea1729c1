"""The dataset catalog: names -> datasets on disk (in the formats of domains/formats) or procedural ones.

    catalog = load_catalog("configs/catalog.yaml")   # validated, frozen; CatalogError (one line) on bad input
    entry = catalog.get("cityscapes")                 # unknown name: the error lists the valid ones
    ds = catalog.open("cityscapes", "val", image_size=128, count=150)   # a torch Dataset of standard samples
    catalog.missing("cityscapes")                     # ["data/cityscapes/leftImg8bit/val (images)", ...]
    catalog.count("cityscapes", "train")              # its declared size, else its images on disk (none read)

A catalog file:

    root: ../data                 # where relative paths start (relative to this file); default: its folder
    datasets:
      cityscapes:
        domain: driving           # one of Mensink's seven
        tasks: [segmentation, depth]
        strip: _leftImg8bit       # removed from an image's file stem before a label suffix is added
        masks: {classes: [road, sidewalk, ...], suffix: _gtFine_labelTrainIds.png}
        depth: {suffix: _disparity.png, encoding: disparity, scale: 256, offset: 1, baseline_focal: 473.6}
        splits:
          train: {images: cityscapes/leftImg8bit/train, masks: cityscapes/gtFine/train, depth: ..., size: 2975}
          val: {...}
      coco:
        domain: consumer
        tasks: [detection, keypoints, segmentation]
        splits:
          train: {images: coco/train2017, coco: coco/annotations/person_keypoints_train2017.json}
      synthetic-driving:           # procedural: rendered on demand, nothing on disk
        domain: driving
        procedural: {seed: 0, image_size: 64}
        splits: {train: {size: 256}, val: {size: 64}}

Labels per task type: segmentation from `masks` (a mask folder) or from `coco`
polygons/RLE; detection and keypoints from `coco`; depth from `depth` (a depth
folder). A label file is found from its image's path relative to `images`:
same sub-folders, the stem minus `strip`, plus the label's `suffix`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from domains.config import TASK_TYPES, ConfigError, Name, Strict, TaskType, load_model, validate
from domains.formats.files import split_files
from domains.synthetic.spaces import PROCEDURAL_TASKS, describe, domain_names

MENSINK_DOMAINS = ("consumer", "driving", "aerial", "underwater", "indoor", "synthetic", "close-up")
RGB = tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)]]


class CatalogError(ConfigError):
    """Bad catalog input: one line naming the file, the field and what was expected."""


class MaskSpec(Strict):
    """How to read a mask folder: label ids (`classes`, optionally `ids` or `offset`) or colours (`colors`)."""

    classes: tuple[str, ...] = ()  # id -> class name, for label-id PNGs
    classes_file: str | None = None  # or: a text file with one class name per line (relative to the root)
    colors: dict[str, RGB] | None = None  # class -> colour, for RGB/palette PNGs (classes in this order)
    ids: dict[int, str | None] | None = None  # raw id -> class (null = ignore); unmapped ids are ignored
    offset: int = 0  # class id = raw id - offset; raw ids below it are ignored
    ignore_ids: tuple[int, ...] = ()  # raw ids that mean ignore (besides 255), e.g. CamVid's void 11
    ignore_colors: tuple[RGB, ...] = ()
    suffix: str = ".png"

    @model_validator(mode="after")
    def _one_encoding(self) -> MaskSpec:
        if sum(map(bool, (self.classes, self.classes_file, self.colors))) != 1:
            raise ValueError("expected one of classes or classes_file (label-id PNGs) or colors (colour PNGs)")
        if self.ids is not None and self.classes:
            unknown = [n for n in self.ids.values() if n is not None and n not in self.classes]
            if unknown:
                raise ValueError(f"ids: class {unknown[0]!r} is not in masks.classes")
        return self



class DepthSpec(Strict):
    """How to read a depth folder: 16-bit PNGs (metres = value / scale) or .npy float metres."""

    suffix: str = ".png"  # ".png" or ".npy" (with whatever precedes it, e.g. "_depth.png")
    scale: Annotated[float, Field(gt=0)] = 1000.0
    encoding: Literal["depth", "disparity"] = "depth"
    offset: float = 0.0  # disparity = (value - offset) / scale
    baseline_focal: Annotated[float, Field(gt=0)] | None = None  # metres x pixels: depth = baseline_focal / disparity

    @model_validator(mode="after")
    def _disparity(self) -> DepthSpec:
        if self.encoding == "disparity" and self.baseline_focal is None:
            raise ValueError("encoding: 'disparity' needs baseline_focal (baseline in metres x focal length in pixels)")
        return self


class KeypointSpec(Strict):
    """Keypoint details a COCO file does not carry."""

    flip_pairs: tuple[tuple[str, str], ...] | None = None  # by name; default: from left/right names
    sigmas: tuple[Annotated[float, Field(gt=0)], ...] | None = None  # OKS sigmas; default: COCO's for its person


class ProceduralSpec(Strict):
    """A dataset rendered by domains/synthetic on demand."""

    seed: int = 0
    image_size: Annotated[int, Field(ge=16, le=1024)] = 64  # rendering size (readers resize to theirs)


class SplitSpec(Strict):
    """One split: where its images and labels are (paths relative to the catalog's root)."""

    images: str | None = None  # folder of images (searched recursively)
    list: str | None = None  # text file naming the split's images, one path per line relative to `images`
    coco: str | None = None  # COCO JSON (its file_names are relative to `images`)
    masks: str | None = None  # mask folder
    depth: str | None = None  # depth folder
    size: Annotated[int, Field(gt=0)] | None = None  # images in the split (checked; plans use it without the data)


class Entry(Strict):
    domain: str
    tasks: tuple[TaskType, ...] | None = None  # procedural default: what the generator labels
    description: str = ""
    procedural: ProceduralSpec | None = None
    strip: str = ""
    masks: MaskSpec | None = None
    depth: DepthSpec | None = None
    keypoints: KeypointSpec | None = None
    background: bool = True  # segmentation from COCO: unannotated pixels are class "background" (else ignore)
    splits: dict[Name, SplitSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        if self.procedural is not None:
            if self.domain not in domain_names():
                raise ValueError(f"domain: unknown procedural domain {self.domain!r}; expected one of: "
                                 f"{', '.join(domain_names())}")  # fmt: skip
            unknown = [t for t in (self.tasks or ()) if t not in PROCEDURAL_TASKS]
            if unknown:
                raise ValueError(f"tasks: the generator has no {unknown[0]!r} labels; expected some of: "
                                 f"{', '.join(PROCEDURAL_TASKS)}")  # fmt: skip
            for name, split in self.splits.items():
                if split.size is None or any((split.images, split.list, split.coco, split.masks, split.depth)):
                    raise ValueError(f"splits.{name}: a procedural split has only a size; expected {{size: N}}")
            return self
        if self.domain not in MENSINK_DOMAINS:
            raise ValueError(f"domain: unknown domain {self.domain!r}; expected one of: {', '.join(MENSINK_DOMAINS)}")
        if not self.tasks:
            raise ValueError("tasks: missing; expected the task types it has labels for: " + ", ".join(TASK_TYPES))
        for name, split in self.splits.items():
            if split.images is None:
                raise ValueError(f"splits.{name}.images: missing; expected the folder of the split's images")
            needs = {"segmentation": ("masks", "coco"), "detection": ("coco",), "keypoints": ("coco",), "depth": ("depth",)}
            for task in self.tasks:
                if not any(getattr(split, f) for f in needs[task]):
                    raise ValueError(f"splits.{name}: task {task!r} needs {' or '.join(needs[task])}: "
                                     f"expected a path to its labels")  # fmt: skip
            if split.masks and self.masks is None:
                raise ValueError(f"splits.{name}.masks: a mask folder needs a masks section with classes or colors")
            if split.depth and self.depth is None:
                raise ValueError(f"splits.{name}.depth: a depth folder needs a depth section with its scale")
        return self

    def digest(self) -> str:
        """Content hash of the entry as written (paths relative to the root): part of every job key using it."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Catalog(Strict):
    root: str = "."
    datasets: dict[Name, Entry] = Field(min_length=1)
    _file: Path = PrivateAttr(default=Path("catalog.yaml"))

    @property
    def file(self) -> Path:
        return self._file

    @property
    def root_dir(self) -> Path:
        return (self._file.parent / self.root).resolve()

    def get(self, name: str) -> Entry:
        try:
            return self.datasets[name]
        except KeyError:
            raise CatalogError(f"{self._file}: unknown dataset {name!r}; expected one of: "
                               f"{', '.join(sorted(self.datasets))}") from None  # fmt: skip

    def path(self, relative: str) -> Path:
        return self.root_dir / relative

    def tasks(self, name: str) -> tuple[str, ...]:
        entry = self.get(name)
        if entry.tasks is not None:
            return entry.tasks
        return describe(name, entry.domain, entry.procedural.image_size).tasks  # what the generator labels

    def missing(self, name: str, splits: tuple[str, ...] | None = None) -> list[str]:
        """Paths the entry names that are not on disk, as 'PATH (what)'; empty for procedural entries."""
        return missing_files(self.get(name), self.root_dir, splits)

    def count(self, name: str, split: str) -> int:
        """The images of `split` of entry `name`: its declared size, else those on disk (listed, none read).

        Raises CatalogError for an unknown split, DataError when the split's files are not there."""
        entry = self.get(name)
        if split not in entry.splits:
            raise CatalogError(f"{self._file}: datasets.{name}.splits: no split {split!r}; expected one of: "
                               f"{', '.join(entry.splits)}")  # fmt: skip
        spec = entry.splits[split]
        return spec.size if spec.size is not None else len(split_files(self.root_dir, spec))

    def open(self, name: str, split: str, image_size: int | None, count: int | None = None, label: str | None = None):
        """Split `split` of entry `name` as a torch Dataset of standard samples, resized to image_size square.

        `count` takes the first samples in sorted file order (jobs draw seeded random subsets instead:
        matrix.execute.dataset); `label` names the dataset in its info (default: the entry's name). Raises CatalogError for an unknown split, DataError for bad data.
        """
        entry = self.get(name)
        if split not in entry.splits:
            raise CatalogError(f"{self._file}: datasets.{name}.splits: no split {split!r}; expected one of: "
                               f"{', '.join(entry.splits)}")  # fmt: skip
        if entry.procedural is not None:
            from domains.synthetic.dataset import SyntheticDataset

            size = entry.splits[split].size
            if count is not None and count > size:
                raise CatalogError(f"{self._file}: datasets.{name}.splits.{split}.size: {size} images; "
                                   f"expected at least the {count} asked for")  # fmt: skip
            ds = SyntheticDataset(label or name, entry.domain, split, count or size,
                                  image_size or entry.procedural.image_size, entry.procedural.seed)  # fmt: skip
            return ds
        from domains.formats.folder import FolderDataset

        return FolderDataset(label or name, entry, split, self.root_dir, image_size, count,
                             where=f"{self._file}: datasets.{name}")  # fmt: skip


def missing_files(entry: Entry, root: Path, splits: tuple[str, ...] | None = None) -> list[str]:
    """Paths `entry` names (relative to `root`) that are not on disk, as 'PATH (what)'; empty for procedural ones."""
    out: list[str] = []
    for split_name, split in entry.splits.items():
        if splits is not None and split_name not in splits:
            continue
        for field, kind in (("images", "dir"), ("list", "file"), ("coco", "file"), ("masks", "dir"), ("depth", "dir")):
            rel = getattr(split, field)
            if rel is None:
                continue
            p = root / rel
            if not (p.is_dir() if kind == "dir" else p.is_file()) and not any(o.startswith(f"{p} (") for o in out):
                out.append(f"{p} ({split_name} {field})")
    if entry.masks is not None and entry.masks.classes_file is not None:
        p = root / entry.masks.classes_file
        if not p.is_file():
            out.append(f"{p} (masks classes_file)")
    return out


# -- loading --------------------------------------------------------------------------------------


def parse_catalog(data: Any, file: str | Path) -> Catalog:
    """Validate a mapping (from `file`, for messages; entry paths are relative to its folder) into a Catalog."""
    catalog = validate(data, Catalog, file, CatalogError, "catalog")
    catalog._file = Path(file)
    return catalog


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog YAML file; any problem raises CatalogError (one line)."""
    catalog = load_model(path, Catalog, CatalogError, "catalog")
    catalog._file = Path(path)
    return catalog


def planned_entry(catalog_file: str | Path, entry: str, digest: str) -> Catalog:
    """The catalog holding `entry`, after checking the entry is still what was planned.

    `digest` is the entry's content hash when the study was planned (matrix.plan.DataRef.catalog);
    an edited entry raises CatalogError rather than silently training on other data.
    """
    catalog = load_catalog(catalog_file)
    now = catalog.get(entry).digest()
    if now != digest:
        raise CatalogError(f"{catalog_file}: datasets.{entry}: changed since the study was planned (content hash "
                           f"{digest}, now {now}); expected the planned entry: plan and run the study again")  # fmt: skip
    return catalog


def open_entry(catalog_file: str | Path, entry: str, digest: str, split: str, image_size: int | None,
               count: int | None = None, label: str | None = None):  # fmt: skip
    """Open a catalog dataset a job refers to, after checking the entry is still what was planned (`planned_entry`)."""
    return planned_entry(catalog_file, entry, digest).open(entry, split, image_size, count, label)
