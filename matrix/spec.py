"""The study spec: what to train, on what, and how; validated once, frozen.

    study = load_study("configs/demo.yaml")   # raises SpecError with one line on bad input

A study file lists only what differs from the defaults below. Unknown keys
and wrong types are errors; an error names the file, the field and what was
expected, e.g.

    configs/bad.yaml: datasets[0].domain: unknown domain 'forest'; expected one of: aerial, driving, ...
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domains import domain_names
from tasks import TASKS

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
PositiveInt = Annotated[int, Field(gt=0)]


class SpecError(ValueError):
    """Bad study input: the message is one line naming the file, the field and what was expected."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(TASKS.names())}")
    return name


def _check_domain(name: str) -> str:
    if name not in domain_names():
        raise ValueError(f"unknown domain {name!r}; expected one of: {', '.join(domain_names())}")
    return name


TaskName = Annotated[str, AfterValidator(_check_task)]
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
    tasks: tuple[TaskName, ...] | None = None  # task types used from it; default: the study's


class ModelSpec(Strict):
    """Choices inside the task models (see tasks/): which detector, which depth loss, what transfers."""

    detector: Literal["fcos", "retinanet", "faster_rcnn"] = "fcos"  # torchvision detector over the backbone + FPN
    depth_loss: Literal["log_l1", "scale_invariant"] = "log_l1"
    transfer_head: bool = False  # also move the head when task and label space match


class PretrainSpec(Strict):
    """The generic init: one model trained on a mixture of domains (the stand-in for ImageNet)."""

    task: TaskName = "segmentation"
    domains: tuple[DomainName, ...] = ()  # mixed over; default: every registered domain
    train: PositiveInt = 800
    val: PositiveInt = 64
    seed: int = 0
    schedule: TrainSpec = TrainSpec(steps=300)


class Study(Strict):
    name: Name
    output_dir: str | None = None  # default: outputs/<name>
    backbone: str = "test_resnet"  # a timm model name
    image_size: Annotated[int, Field(ge=16, le=1024)] = 64
    init: Literal["generic", "imagenet", "scratch"] = "generic"
    model: ModelSpec = ModelSpec()
    scratch: bool = True  # also finetune every target from a random init (what the init is worth)
    tasks: tuple[TaskName, ...] = ("segmentation", "depth")
    datasets: tuple[DatasetSpec, ...] = Field(min_length=1)
    target_sizes: tuple[PositiveInt, ...] = (64,)
    seeds: tuple[int, ...] = (0,)
    source_seed: int = 0
    pretrain: PretrainSpec = PretrainSpec()
    source: TrainSpec = TrainSpec(steps=150)
    finetune: TrainSpec = TrainSpec(steps=60)
    # accelerator-hours one job of each kind takes, for `tmx plan`'s cost estimate before any run
    estimates: dict[Literal["pretrain", "source", "transfer", "baseline", "scratch"], Annotated[float, Field(ge=0)]] = {}

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        import timm

        if v not in timm.list_models():
            close = difflib.get_close_matches(v, timm.list_models(), n=5) or ["test_resnet", "resnet18"]
            raise ValueError(f"unknown backbone {v!r}: not a timm model name; close ones: {', '.join(close)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        if not any(ds.role != "target" for ds in self.datasets):
            raise ValueError("datasets: every dataset has role 'target'; expected at least one source")
        if not any(ds.role != "source" for ds in self.datasets):
            raise ValueError("datasets: every dataset has role 'source'; expected at least one target")
        seen: set[str] = set()
        for i, ds in enumerate(self.datasets):
            if ds.name in seen:
                raise ValueError(f"datasets[{i}].name: {ds.name!r} is used twice; dataset names must be unique")
            seen.add(ds.name)
            largest = max(self.target_sizes)
            if ds.role != "source" and ds.train < largest:
                raise ValueError(
                    f"datasets[{i}].train: {ds.train} images, fewer than the largest target size {largest}; "
                    f"expected at least {largest}"
                )
        return self

    def dataset_tasks(self, ds: DatasetSpec) -> tuple[str, ...]:
        return ds.tasks if ds.tasks is not None else self.tasks

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"outputs/{self.name}")


# -- loading and error messages --------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a field annotation."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at `loc` (to list valid keys)."""
    tp: Any = Study
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = ", ".join(model.model_fields) if model else "?"
        return f"{_where(loc)}: unknown key {loc[-1]!r}; expected one of: {valid}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{_where(loc)}: missing; this field is required"
    if err["type"] == "literal_error":
        return f"{_where(loc)}: got {err['input']!r}; {msg[0].lower()}{msg[1:]}"
    if not loc:  # a cross-field check: its message starts with the field
        return msg
    shown = repr(err["input"]) if not isinstance(err["input"], dict) else "a mapping"
    return f"{_where(loc)}: {msg} (got {shown})" if "unknown" not in msg else f"{_where(loc)}: {msg}"


def parse_study(data: Any, source: str) -> Study:
    """Validate a mapping (from `source`, for messages) into a frozen Study."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of study fields at the top level, got {type(data).__name__}")
    try:
        return Study.model_validate(data)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # misspelt keys first
        raise SpecError(f"{source}: {_message(errors[0])}") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML file; any problem raises SpecError (one line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError(f"{path}: {where}invalid YAML ({getattr(e, 'problem', None) or e})") from None
    return parse_study(data, str(path))
