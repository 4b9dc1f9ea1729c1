"""The OpenMMLab backend: mmdet detectors and mmseg segmentors, by config name, on our shared backbone.

    available()                                   # is the extra (`make openmmlab`) installed?
    check_config("mmdet", "retinanet_r50_fpn_1x_coco")   # the config file, or ValueError naming close ones
    delegate("detection", "openmmlab", "fcos_r50-caffe_fpn_gn-head_1x_coco")  # what tasks.detection calls

This package imports no OpenMMLab module itself: the study spec and the
native tasks read the names and checks here whether or not the extra is
installed. The mm code lives in `backbone.py` (our timm backbone in
mmengine's MODELS registry, config loading, the head wrapper),
`detection.py` and `segmentation.py`, imported only when a study asks for
`backend: openmmlab`.
"""

from __future__ import annotations

import difflib
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any, Literal

BACKENDS = ("native", "openmmlab")
DEFAULT_DETECTOR = "retinanet_r50_fpn_1x_coco"
DEFAULT_SEGMENTOR = "fcn_r50-d8_4xb2-40k_cityscapes-512x1024"
INSTALL = "run `make openmmlab`"
MISSING = f"the OpenMMLab extra (mmcv with ops, mmengine, mmdet, mmsegmentation) is not installed; {INSTALL}"

Library = Literal["mmdet", "mmseg"]
MODULES = ("mmcv", "mmengine", "mmdet", "mmseg")


class ExtraMissingError(ImportError):
    """The OpenMMLab extra is not installed; the message says how to install it."""


def available() -> bool:
    """True when mmcv (with its compiled ops), mmengine, mmdet and mmseg can be imported here."""
    if any(importlib.util.find_spec(m) is None for m in MODULES):
        return False
    return importlib.util.find_spec("mmcv._ext") is not None  # mmcv-lite has no ops: mmdet's NMS and RoIAlign need them


def require() -> None:
    """Raise ExtraMissingError (naming `make openmmlab`) unless the extra is installed."""
    if not available():
        raise ExtraMissingError(MISSING)


def configs_root(library: Library) -> Path:
    """The folder of configs that ships inside the package (`mmdet/.mim/configs`, `mmseg/.mim/configs`)."""
    require()
    spec = importlib.util.find_spec(library)
    return Path(next(iter(spec.submodule_search_locations))) / ".mim" / "configs"


@cache
def config_names(library: Library) -> dict[str, Path]:
    """Every config of `library` by name (its file name without `.py`; `_base_` fragments excluded)."""
    root = configs_root(library)
    return {p.stem: p for p in sorted(root.glob("*/*.py")) if p.parent.name != "_base_"}


def check_config(library: Library, name: str) -> Path:
    """The file of `library`'s config `name`; an unknown name raises ValueError listing close ones."""
    names = config_names(library)
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    hint = f"close ones: {', '.join(close)}" if close else f"see {configs_root(library)}/*/"
    raise ValueError(f"unknown {library} config {name!r}; expected a config name from {library}'s configs, {hint}")


def delegate(task: Literal["detection", "segmentation"], backend: str, config: str) -> Any:
    """The mm task a native task delegates to for `backend` (None for "native"); `config` is an mm config name."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if backend == "native":
        return None
    require()
    if task == "detection":
        from tasks.openmmlab.detection import MMDetection

        return MMDetection(config)
    from tasks.openmmlab.segmentation import MMSegmentation

    return MMSegmentation(config)
