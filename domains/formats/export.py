"""Writing datasets in the field's formats, with a catalog file that reads them back.

    written = export_dataset("synthetic-driving", "driving", {"train": ds_train, "val": ds_val},
                             Path("out"), formats=("coco", "masks", "depth"))

    out/images/<split>/000000.png      8-bit RGB
    out/annotations/<split>.json       COCO: boxes (xywh), labels (category id = things index + 1), keypoints
    out/masks/<split>/000000.png       label ids, 255 = ignore
    out/depth/<split>/000000.npy       float32 metres (or 16-bit PNG at scale 256), 0 = invalid
    out/catalog.yaml                   an entry with the dataset's name over these paths

Reading the export back (FolderDataset, at the exported size) gives the same
labels: segmentation, boxes, labels and keypoints exactly, depth exactly in
.npy (to 1/512 m in PNG); images to 8 bits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import yaml

from domains.base import DatasetInfo
from domains.formats.coco import coco_annotations, coco_categories
from domains.formats.depth import write_depth
from domains.formats.images import write_image
from domains.formats.masks import write_mask

PNG_DEPTH_SCALE = 256.0


class ExportError(ValueError):
    """The dataset cannot be written in the asked format: one line."""


def _formats_of(info: DatasetInfo) -> tuple[str, ...]:
    out = []
    if {"detection", "keypoints"} & set(info.tasks):
        out.append("coco")
    if "segmentation" in info.tasks:
        out.append("masks")
    if "depth" in info.tasks:
        out.append("depth")
    return tuple(out)


def export_dataset(name: str, domain: str, splits: Mapping[str, torch.utils.data.Dataset], out: Path,
                   formats: Sequence[str] | None = None, depth_format: str = "npy") -> dict[str, int]:  # fmt: skip
    """Write every sample of each split of `splits`; returns samples written per split."""
    info: DatasetInfo = next(iter(splits.values())).info
    have = _formats_of(info)
    formats = tuple(formats or have)
    for f in formats:
        if f not in have:
            raise ExportError(f"{name}: no labels for format {f!r} (its task types: {', '.join(info.tasks)}); "
                              f"expected one of: {', '.join(have)}")  # fmt: skip
    kp_label = info.things.index(info.keypoints.category) if info.keypoints else None
    depth_suffix = ".npy" if depth_format == "npy" else ".png"
    entry_splits: dict[str, dict] = {}
    written: dict[str, int] = {}
    for split, ds in splits.items():
        images, anns = [], []
        for i in range(len(ds)):
            s = ds[i]
            stem = f"{i:06d}"
            h, w = s["image"].shape[-2:]
            write_image(out / "images" / split / f"{stem}.png", s["image"])
            if "masks" in formats:
                write_mask(out / "masks" / split / f"{stem}.png", s["segmentation"])
            if "depth" in formats:
                try:
                    write_depth(out / "depth" / split / f"{stem}{depth_suffix}", s["depth"], PNG_DEPTH_SCALE)
                except ValueError as e:  # deeper than a 16-bit PNG holds at this scale
                    raise ExportError(f"{e}; expected --depth-format npy") from None
            if "coco" in formats:
                images.append({"id": i + 1, "file_name": f"{stem}.png", "width": int(w), "height": int(h)})
                kps = s["keypoints"].numpy() if "keypoints" in s else None
                anns += coco_annotations(i + 1, len(anns) + 1, s["boxes"].numpy(), s["labels"].numpy(), kps, kp_label)
        paths = {"images": f"images/{split}"}
        if "coco" in formats:
            coco = {"info": {"description": f"{name} ({domain}), exported by tmx datasets export"},
                    "images": images, "annotations": anns, "categories": coco_categories(info.things, info.keypoints)}  # fmt: skip
            (out / "annotations").mkdir(parents=True, exist_ok=True)
            (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
            paths["coco"] = f"annotations/{split}.json"
        if "masks" in formats:
            paths["masks"] = f"masks/{split}"
        if "depth" in formats:
            paths["depth"] = f"depth/{split}"
        entry_splits[split] = paths | {"size": len(ds)}
        written[split] = len(ds)
    tasks = [t for t in info.tasks
             if (t == "segmentation" and "masks" in formats) or (t == "depth" and "depth" in formats)
             or (t in ("detection", "keypoints") and "coco" in formats)]  # fmt: skip
    entry: dict = {"domain": domain, "tasks": tasks, "description": f"exported from {name}"}
    if "masks" in formats:
        entry["masks"] = {"classes": list(info.classes)}
    if "depth" in formats:
        entry["depth"] = {"suffix": depth_suffix, "scale": PNG_DEPTH_SCALE}
    if "coco" in formats and info.keypoints is not None:
        schema = info.keypoints
        entry["keypoints"] = {"flip_pairs": [[schema.names[a], schema.names[b]] for a, b in schema.flip_pairs]}
        if schema.sigmas:
            entry["keypoints"]["sigmas"] = list(schema.sigmas)
    entry["splits"] = entry_splits
    (out / "catalog.yaml").write_text(yaml.safe_dump({"root": ".", "datasets": {name: entry}}, sort_keys=False))
    return written
