"""Which files a split on disk has, without reading an image: what a plan counts and a reader lists.

    files = list_images(Path("data/coco/val2017"))     # sorted relative paths: a deterministic order
    data = read_coco(Path("annotations/instances_val2017.json"))   # the JSON, its structure checked
    split_files(root, entry.splits["val"])             # the split's images in reading order (FolderDataset's)

Imports no torch, PIL or pycocotools. Every problem raises `DataError` with
one line naming the file, the field and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domains.catalog import SplitSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A problem with a dataset on disk: one line naming the file, the field and what was expected."""


def list_images(folder: Path) -> list[str]:
    """Image files under `folder` (recursively) as sorted POSIX paths relative to it."""
    if not folder.is_dir():
        raise DataError(f"{folder}: images: no such folder; expected a folder of images")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())  # fmt: skip


def listed(list_file: Path, images: Path) -> list[str]:
    """The images a split list names (paths relative to `images`, the extension optional), sorted."""
    try:
        lines = [ln.strip() for ln in list_file.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{list_file}: list: unreadable ({e}); expected a text file of image paths") from None
    files = []
    for n, line in enumerate(lines, 1):
        if not line:
            continue
        rel = line.split()[0]  # VOC-style lists may carry a second column
        found = next((rel + ext for ext in ("", *IMAGE_SUFFIXES) if (images / (rel + ext)).is_file()), None)
        if found is None:
            raise DataError(f"{list_file}: line {n}: no image {rel!r} under {images}; expected a path relative to it")
        files.append(found)
    return sorted(files)


def read_coco(path: Path) -> dict[str, Any]:
    """The COCO JSON at `path` with its structure checked (images, annotations, categories and their keys)."""
    if not path.is_file():
        raise DataError(f"{path}: coco: no such file; expected a COCO JSON annotation file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: coco: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: {key}: missing or not a list; expected COCO's images, annotations, categories")
    for field, rows, needs in (("images", data["images"], ("id", "file_name", "width", "height")),
                               ("categories", data["categories"], ("id", "name")),
                               ("annotations", data["annotations"], ("id", "image_id", "category_id"))):  # fmt: skip
        for i, row in enumerate(rows):
            lacking = [k for k in needs if not isinstance(row, dict) or k not in row]
            if lacking:
                raise DataError(f"{path}: {field}[{i}]: missing {', '.join(lacking)}; expected {', '.join(needs)}")
    for i, img in enumerate(data["images"]):
        if not all(isinstance(img[k], int | float) and img[k] > 0 for k in ("width", "height")):
            raise DataError(f"{path}: images[{i}]: width x height {img['width']!r}x{img['height']!r}; "
                            f"expected the image's size in pixels")  # fmt: skip
    ids = [img["id"] for img in data["images"]]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: images: repeated image ids; expected each id once")
    return data


def coco_files(data: dict[str, Any]) -> list[str]:
    """The image files of a COCO JSON (`read_coco`) in reading order: its distinct file_names, sorted."""
    return sorted({str(img["file_name"]) for img in data["images"]})


def split_files(root: Path, split: SplitSpec) -> list[str]:
    """The images of `split` (paths under `root`) in reading order: a COCO file's, a list's, or its folder's."""
    images = root / split.images
    if split.coco:
        return coco_files(read_coco(root / split.coco))
    if split.list:
        return listed(root / split.list, images)
    return list_images(images)
