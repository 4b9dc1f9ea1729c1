"""Our shared timm backbone inside mm models: the registered backbone, config loading, the head wrapper.

    cfg, read = load_model_config("mmdet", "retinanet_r50_fpn_1x_coco", Levels.of_neck(neck))
    head = MMHead(mmdet.registry.MODELS.build(cfg))
    head(model.backbone, inputs, data_samples, "loss")   # mm's own forward, on the task model's backbone

An mm detector or segmentor normally owns its backbone. Here the backbone
belongs to the task model (`TaskModel.backbone`, state-dict keys
`backbone.*`, exactly as in native models, so `tasks.transfer` moves it
between backends and task types). The config's backbone is replaced by
`TmxSharedBackbone`, registered in mmengine's root MODELS registry (mmdet's
and mmseg's registries are its children and search it), which holds no
weights: it runs whichever backbone module `MMHead` binds for the length of
one call and returns the levels the config's neck or heads read. Everything
else of the mm model (neck, heads, losses, post-processing) is the config's,
with its channel counts set from the backbone's `feature_info`, its strides
from the backbone's reductions, `num_classes` from the dataset's label space,
SyncBN replaced by BN (one CPU process), and no pretrained weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS
from torch import nn

from tasks.heads import Neck
from tasks.openmmlab import Library, check_config

SHARED_BACKBONE = "TmxSharedBackbone"


@MODELS.register_module(name=SHARED_BACKBONE)
class SharedBackbone(nn.Module):
    """An mm backbone that runs a bound timm `features_only` module and returns its levels `indices`.

    `SharedBackbone(indices=[1, 2, 3, 4])(images)` -> tuple of those levels of
    the bound module's feature list. It owns no weights: the module is bound
    with `bound(module)` for the length of a call (see `MMHead.forward`), so it
    never appears twice in a state dict.
    """

    def __init__(self, indices: list[int], init_cfg: Any = None) -> None:
        super().__init__()
        self.indices = list(indices)
        self._module: tuple[nn.Module, ...] = ()  # a tuple: nn.Module does not register it as a child

    @contextlib.contextmanager
    def bound(self, module: nn.Module) -> Iterator[None]:
        self._module = (module,)
        try:
            yield
        finally:
            self._module = ()

    def init_weights(self) -> None:  # mm models call it on every child; the bound module is initialised by us
        pass

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self._module:
            raise RuntimeError(f"{SHARED_BACKBONE} called with no backbone bound; call the model through MMHead")
        features = self._module[0](images)
        return tuple(features[i] for i in self.indices)


class MMHead(nn.Module):
    """An mm detector or segmentor as a task head: `head(backbone, inputs, data_samples, mode)`.

    `inputs` are normalised images [B, 3, H, W]; `mode` is mm's "loss",
    "predict" or "tensor". The mm model's backbone runs `backbone` (the task
    model's) during the call. State-dict keys: `model.neck.*`,
    `model.bbox_head.*`, `model.decode_head.*`, ... (never the backbone).
    """

    def __init__(self, model: nn.Module, config: str) -> None:
        super().__init__()
        if not isinstance(getattr(model, "backbone", None), SharedBackbone):
            raise TypeError(f"mm model from {config!r} does not run the shared backbone ({SHARED_BACKBONE})")
        self.model, self.config = model, config

    def forward(self, backbone: nn.Module, inputs: torch.Tensor, data_samples: list[Any] | None, mode: str) -> Any:
        with self.model.backbone.bound(backbone):
            return self.model(inputs, data_samples, mode=mode)


def loss_sum(losses: dict[str, Any]) -> torch.Tensor:
    """mm's rule (BaseModel.parse_losses): the sum of every term whose name contains "loss" (lists summed)."""
    total = 0
    for name, value in losses.items():
        if "loss" in name:
            total = total + (sum(v.mean() for v in value) if isinstance(value, list | tuple) else value.mean())
    if not isinstance(total, torch.Tensor):
        raise ValueError(f"the mm model returned no loss term (got {', '.join(losses) or 'nothing'})")
    return total


# -- configs ------------------------------------------------------------------------------------------


def walk(node: Any, fn) -> Any:
    """Apply `fn` to every mapping in a config tree (bottom-up); lists and tuples are walked too."""
    if isinstance(node, dict):
        return fn({k: walk(v, fn) for k, v in node.items()})
    if isinstance(node, list | tuple):
        return type(node)(walk(v, fn) for v in node)
    return node


def _no_pretrained_sync_bn(d: dict[str, Any]) -> dict[str, Any]:
    """No pretrained weights anywhere (`init_cfg` of type Pretrained, `pretrained`), BN instead of SyncBN."""
    if d.get("type") == "SyncBN":
        d = {**d, "type": "BN"}
    if isinstance(d.get("init_cfg"), dict) and d["init_cfg"].get("type") == "Pretrained":
        d = {**d, "init_cfg": None}
    if d.get("pretrained") is not None:
        d = {**d, "pretrained": None}
    return d


@dataclass(frozen=True)
class Levels:
    """Backbone levels an mm model may read: their indices in the backbone's feature list, channels, strides."""

    indices: tuple[int, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    @classmethod
    def of_neck(cls, neck: Neck) -> Levels:
        """The levels of stride >= 4 our Neck reads (the stride-2 stem skipped), which `build_model` made from
        the backbone's `feature_info`.

        A task's `build_head(neck, info)` sees the neck, not the backbone: the
        neck keeps the levels it reads (`levels`, `strides`) and its FPN's
        lateral convolutions their input channels.
        """
        chans = tuple(block[0].in_channels for block in neck.fpn.inner_blocks)
        return cls(tuple(neck.levels), chans, tuple(neck.strides[: len(neck.levels)]))

    def deepest(self, count: int, config: str) -> Levels:
        """The `count` deepest levels (what a config's backbone gave its neck or heads)."""
        if count > len(self.indices):
            raise ValueError(f"mm config {config!r} reads {count} backbone levels; this backbone has "
                             f"{len(self.indices)} of stride >= 4 (strides {list(self.strides)})")  # fmt: skip
        k = len(self.indices) - count
        return Levels(self.indices[k:], self.channels[k:], self.strides[k:])


def load_model_config(library: Library, name: str, levels: Levels) -> tuple[dict[str, Any], Levels]:
    """`name`'s model config with no backbone of its own nor pretrained weights; and the levels it reads.

    The config's backbone becomes `TmxSharedBackbone` over the backbone's
    deepest N levels, N = the number of levels the config's backbone gave
    (its `out_indices`, or the length of its neck's `in_channels`); the
    caller sets the sizes that depend on those levels and on the label
    space. The data preprocessor is mm's plain one: inputs arrive normalised.
    """
    cfg = Config.fromfile(check_config(library, name)).model.to_dict()
    backbone, neck = cfg["backbone"], cfg.get("neck")
    if isinstance(neck, dict) and isinstance(neck.get("in_channels"), list | tuple):
        count = len(neck["in_channels"])
    else:
        count = len(backbone.get("out_indices", (0, 1, 2, 3)))
    read = levels.deepest(count, name)
    cfg = walk(cfg, _no_pretrained_sync_bn)
    cfg["backbone"] = {"type": SHARED_BACKBONE, "indices": list(read.indices)}
    cfg["data_preprocessor"] = {"type": "BaseDataPreprocessor"}
    cfg.pop("init_cfg", None)
    return cfg, read


def build(registry: Any, cfg: dict[str, Any], name: str) -> MMHead:
    """Build the mm model from `cfg` with `registry` (mmdet's or mmseg's), run its own init, wrap it."""
    model = registry.build(ConfigDict(cfg))
    with _quiet():
        model.init_weights()  # the config's initialisation schemes (Normal, Xavier, ...): no weights are read
    return MMHead(model, name)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence mmengine's per-parameter init report (it logs every tensor at INFO)."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)
