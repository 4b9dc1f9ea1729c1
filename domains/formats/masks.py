"""Mask folders: one PNG per image giving its semantic segmentation.

Two encodings:
    label ids   a single-channel PNG (L, P or 16-bit) whose values are class ids; 255 = ignore.
                `ids` maps raw values to classes (unmapped values -> ignore; e.g. Cityscapes
                labelIds), or `offset` shifts them (ADE20K: 0 = "other" -> ignore, 1.. -> 0..).
                A palette PNG (Pascal VOC) stores class ids as its palette indices.
    colours     an RGB (or palette) PNG whose colours name classes through `colors`
                (class -> [r, g, b]); `ignore_colors` -> ignore; any other colour is an error.

    decoder = MaskDecoder(classes=("road", "car"))
    seg = decoder.read(path, (h, w))     # int64 [H, W], ids into `classes`, 255 = ignore
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from domains.base import IGNORE
from domains.formats.images import DataError, open_png


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class MaskDecoder:
    """Turns mask PNGs into int64 [H, W] class ids (255 = ignore), checking size and range."""

    def __init__(self, classes: Sequence[str] = (), colors: Mapping[str, Sequence[int]] | None = None,
                 ids: Mapping[int, str | None] | None = None, offset: int = 0,
                 ignore_colors: Sequence[Sequence[int]] = (), ignore_ids: Sequence[int] = (),
                 spec_at: str = "masks") -> None:  # fmt: skip
        """`spec_at` is where these settings were declared (e.g. "catalog.yaml: datasets.NAME.masks"), for errors."""
        self.colors = dict(colors) if colors else None
        self.classes = tuple(self.colors) if self.colors else tuple(classes)
        self.ids = None
        if ids is not None:
            index = {c: i for i, c in enumerate(self.classes)}
            unknown = [n for n in ids.values() if n is not None and n not in index]
            if unknown:
                raise DataError(f"{spec_at}.ids: class {unknown[0]!r} is not one of the classes; expected one of: "
                                f"{', '.join(self.classes)}")  # fmt: skip
            self.ids = {int(raw): (IGNORE if name is None else index[name]) for raw, name in ids.items()}
        self.offset, self.ignore_ids = offset, tuple(ignore_ids)
        if self.colors:
            self._color_keys = _pack(np.array(list(self.colors.values())))
            self._ignore_keys = _pack(np.array(ignore_colors)) if len(ignore_colors) else np.zeros(0, np.int64)

    def read(self, path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The mask at `path` as int64 [H, W]; DataError if missing, unreadable, the wrong size or out of range."""
        img = open_png(path, "mask")
        if shape is not None and (img.height, img.width) != tuple(shape):
            raise DataError(f"{path}: mask: size {img.width}x{img.height} differs from its image's "
                            f"{shape[1]}x{shape[0]}; expected the same size")  # fmt: skip
        return self._colors(path, img) if self.colors else self._ids(path, img)

    def _ids(self, path: Path, img: Image.Image) -> np.ndarray:
        if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise DataError(f"{path}: mask: a {img.mode} PNG; expected a single-channel label-id PNG (L, P or "
                            f"16-bit), or class colours under masks.colors in the catalog")  # fmt: skip
        raw = np.asarray(img).astype(np.int64)
        if self.ids is not None:
            lut = np.full(max(int(raw.max(initial=0)) + 1, 256), IGNORE, np.int64)
            for value, cls in self.ids.items():
                if value < len(lut):
                    lut[value] = cls
            return lut[raw]
        seg = raw - self.offset
        seg[(raw == IGNORE) | (seg < 0) | np.isin(raw, self.ignore_ids)] = IGNORE
        bad = (seg != IGNORE) & (seg >= len(self.classes))
        if bad.any():
            values = ", ".join(str(v) for v in np.unique(raw[bad])[:5])
            raise DataError(f"{path}: mask: label id {values} out of range; expected ids 0..{len(self.classes) - 1} "
                            f"(+ offset {self.offset}) or 255 = ignore")  # fmt: skip
        return seg

    def _colors(self, path: Path, img: Image.Image) -> np.ndarray:
        keys = _pack(np.asarray(img.convert("RGB")))
        uniq, inverse = np.unique(keys, return_inverse=True)
        where = {int(k): i for i, k in enumerate(self._color_keys)}
        ignore = set(self._ignore_keys.tolist())
        lut = np.full(len(uniq), -1, np.int64)
        for j, k in enumerate(uniq.tolist()):
            lut[j] = where.get(k, IGNORE if k in ignore else -1)
        if (lut < 0).any():
            shown = ", ".join(f"({k >> 16}, {(k >> 8) & 255}, {k & 255})" for k in uniq[lut < 0][:3].tolist())
            raise DataError(f"{path}: mask: colour {shown} names no class; expected one of the colours under "
                            f"masks.colors (or masks.ignore_colors)")  # fmt: skip
        return lut[inverse].reshape(keys.shape)


def write_mask(path: Path, seg: torch.Tensor | np.ndarray) -> None:
    """int [H, W] class ids (255 = ignore) -> a label-id PNG (8-bit; 16-bit when ids pass 254)."""
    seg = np.asarray(seg, np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if seg[seg != IGNORE].max(initial=0) < IGNORE:
        Image.fromarray(seg.astype(np.uint8)).save(path)
    else:
        Image.fromarray(seg.astype(np.uint16)).save(path)
