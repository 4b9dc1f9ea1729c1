"""The config layer shared by study files (matrix/spec.py) and catalog files (domains/catalog.py).

    study = load_model("configs/demo.yaml", Study, error=SpecError, what="study")   # one line on bad input
    model = validate(data, Catalog, "catalog.yaml", error=CatalogError, what="catalog")

Models derive from `Strict` (frozen; unknown keys are errors). Any problem,
from a missing file to a wrong type deep inside, raises `error` with one line
naming the file, the field and what was expected, e.g.

    study.yaml: datasets[0].domian: unknown key 'domian'; expected one of: name, domain, role, ...
    catalog.yaml: datasets.street.splits.train: task 'detection' needs coco: expected a path to its labels

A validator's ValueError becomes `FIELD: MESSAGE`; one raised by a model
validator may start with the field it is about (`splits.train: ...`), which
is then appended to the model's place. Imports neither torch nor anything
heavy: every `tmx` command reads its config through here.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Tag, ValidationError

# the task types a dataset may have labels for (tasks/ registers one module for each; tests check they agree)
TASK_TYPES = ("depth", "detection", "keypoints", "segmentation")
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """Bad config input: the message is one line naming the file, the field and what was expected."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_task(name: str) -> str:
    if name not in TASK_TYPES:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(TASK_TYPES)}")
    return name


TaskType = Annotated[str, AfterValidator(check_task)]


# -- reading ---------------------------------------------------------------------------------------


def read_yaml(path: str | Path, error: type[ConfigError] = ConfigError, what: str = "config") -> Any:
    """The parsed YAML of `path` (a `what` file, for messages); a missing, unreadable or invalid file raises `error`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise error(f"{path}: {where}invalid YAML ({getattr(e, 'problem', None) or e})") from None


def validate(data: Any, model: type[M], source: str | Path, error: type[ConfigError] = ConfigError,
             what: str = "config") -> M:  # fmt: skip
    """`data` (read from `source`, named in messages) validated into a frozen `model`; a problem raises `error`."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping of {what} fields at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # misspelt keys first
        raise error(f"{source}: {error_line(errors[0], model)}") from None


def load_model(path: str | Path, model: type[M], error: type[ConfigError] = ConfigError, what: str = "config") -> M:
    """Read and validate a YAML `what` file into a frozen `model`; any problem raises `error` (one line)."""
    return validate(read_yaml(path, error, what), model, str(path), error, what)


# -- error messages --------------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from an annotation (a union of several models stays a union)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) > 1:
                return tp
            tp = args[0]
        else:
            return tp


def _tags(tp: Any) -> dict[str, Any]:
    """A tagged union's members by tag (`Annotated[Model, Tag("...")]`); {} for anything else."""
    out = {}
    for member in typing.get_args(tp):
        if typing.get_origin(member) is Annotated:
            out.update({m.tag: member for m in member.__metadata__ if isinstance(m, Tag)})
    return out


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None]:
    """The field path of `loc` as a user writes it (`datasets[0].domain`: union tags left out), and the model
    holding the field there (None where the path leaves the models)."""
    where, tp = "", root
    for part in loc:
        tp = _unwrap(tp) if tp is not None else None
        tags = _tags(tp) if typing.get_origin(tp) in (Union, types.UnionType) else {}
        if isinstance(part, str) and part in tags:
            tp = tags[part]
            continue
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        origin = typing.get_origin(tp)
        if origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (tuple, list) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            tp = None
    tp = _unwrap(tp) if tp is not None else None
    return where, tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def error_line(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error of validating `root` as 'field.path: what was wrong; what was expected'."""
    loc = tuple(err["loc"])
    where, _ = _walk(root, loc)
    if err["type"] == "extra_forbidden":
        _, model = _walk(root, loc[:-1])
        valid = ", ".join(model.model_fields) if model else "?"
        return f"{where}: unknown key {loc[-1]!r}; expected one of: {valid}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{where}: missing; this field is required"
    if err["type"] == "literal_error":
        return f"{where}: got {err['input']!r}; {msg[0].lower()}{msg[1:]}"
    if err["type"] == "value_error" and ":" in msg.split(" ")[0]:  # a model check naming its field
        return f"{where}.{msg}" if where else msg
    if err["type"] == "value_error":  # our validators' messages say what they got
        return f"{where}: {msg}"
    shown = "a mapping" if isinstance(err["input"], dict) else repr(err["input"])
    return f"{where}: {msg} (got {shown})"
