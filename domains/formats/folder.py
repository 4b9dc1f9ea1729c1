"""FolderDataset: one split of a catalog entry read from disk into standard samples.

    ds = FolderDataset("coco", entry, "val", Path("data"), 128, count=150, where="catalog.yaml: datasets.coco")
    ds.info                      # DatasetInfo: classes, things, keypoint schema
    ds[0]                        # {"image": [3, S, S], "boxes": [N, 4], ...} or DataError (one line)
    ds.iter_checked()            # every sample with its problems, one line each, without stopping
    ds.file_problems             # the problems that belong to no sample (a COCO annotation of an unknown image)

Samples are the split's images in sorted order (by path under `images`, or by
file_name in a COCO file); `count` takes the first ones. Every sample is
resized to image_size x image_size so batches stack. Reading a sample raises
on the split's first file problem too, so nothing trains on a file that
`tmx datasets check` would reject. `entry` (a catalog entry: domains/catalog.py)
says how to read the split, its paths relative to `root`; errors in what it
declares name `where` it is declared and the field
(`catalog.yaml: datasets.NAME.keypoints.sigmas: ...`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import torch

from domains.base import DatasetInfo, Sample
from domains.formats.coco import CocoFile
from domains.formats.depth import read_depth
from domains.formats.files import DataError, split_files
from domains.formats.images import image_tensor, read_image, resize_sample
from domains.formats.masks import MaskDecoder

if TYPE_CHECKING:
    from domains.catalog import Entry


class FolderDataset(torch.utils.data.Dataset):
    def __init__(self, name: str, entry: Entry, split: str, root: Path, image_size: int | None,
                 count: int | None = None, where: str | None = None) -> None:  # fmt: skip
        """`name` labels the samples' info; `where` names the entry in messages (default: `datasets.NAME`)."""
        self.name, self.entry, self.split = name, entry, split
        spec_at = where or f"datasets.{name}"
        paths = entry.splits[split]
        self.image_size = image_size
        self.images_dir = root / paths.images
        self.masks_dir = root / paths.masks if paths.masks else None
        self.depth_dir = root / paths.depth if paths.depth else None
        self.coco: CocoFile | None = None
        if paths.coco:
            kp = entry.keypoints
            self.coco = CocoFile.load(root / paths.coco, kp.flip_pairs if kp else None, kp.sigmas if kp else None,
                                      f"{spec_at}.keypoints")  # fmt: skip
            self.files = sorted(self.coco.images)  # = files.coco_files: what a plan counted
        else:
            self.files = split_files(root, paths)
        if count is not None:
            if count > len(self.files):
                raise DataError(f"{self.images_dir}: images: {len(self.files)} in split {split!r}; expected at "
                                f"least the {count} asked for")  # fmt: skip
            self.files = self.files[:count]
        self.tasks = tuple(entry.tasks or ())
        self.decoder = None
        if "segmentation" in self.tasks and self.masks_dir is not None:
            m = entry.masks
            names = () if m.colors else (m.classes or _class_file(root / m.classes_file))
            self.decoder = MaskDecoder(names, m.colors, m.ids, m.offset, m.ignore_colors, m.ignore_ids, f"{spec_at}.masks")
            classes = self.decoder.classes
        elif "segmentation" in self.tasks and self.coco is not None:
            classes = (("background",) if entry.background else ()) + self.coco.things
        else:
            classes = ()
        things = self.coco.things if self.coco is not None and {"detection", "keypoints"} & set(self.tasks) else ()
        keypoints = self.coco.keypoints if self.coco is not None and "keypoints" in self.tasks else None
        if "keypoints" in self.tasks and keypoints is None:
            raise DataError(f"{self.coco.path}: categories: no category has keypoints; expected one for task "
                            f"'keypoints' ({spec_at}.tasks)")  # fmt: skip
        self.file_problems: list[str] = list(self.coco.problems) if self.coco is not None else []
        self.info = DatasetInfo(name=name, domain=entry.domain, tasks=self.tasks, classes=classes,
                                image_size=image_size or 0, things=things, keypoints=keypoints)  # fmt: skip

    def __len__(self) -> int:
        return len(self.files)

    @property
    def ids(self) -> list[str]:
        """Each sample's id: its image's path relative to the images folder."""
        return list(self.files)

    def label_path(self, folder: Path, file: str, suffix: str) -> Path:
        """The label file of image `file` (relative to the images folder) in `folder`."""
        rel = PurePosixPath(file)
        stem = rel.stem.removesuffix(self.entry.strip) if self.entry.strip else rel.stem
        return folder / rel.parent / f"{stem}{suffix}"

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.files):
            raise IndexError(f"{self.name}/{self.split}: index {index} out of range [0, {len(self.files)})")

        def report(message: str) -> None:
            raise DataError(message)

        if self.file_problems:
            more = len(self.file_problems) - 1
            also = f" (and {more} more problem{'s' if more > 1 else ''}: tmx datasets check lists them)" if more else ""
            report(self.file_problems[0] + also)
        return self._load(index, report)

    def _load(self, index: int, report: Callable[[str], None]) -> Sample | None:
        """Sample `index`; each problem goes to `report` (which raises, or collects and lets this go on)."""
        file = self.files[index]
        path = self.images_dir / file
        if self.coco is not None and not path.is_file():
            report(f"{self.coco.path}: images[{self.coco.image_index[file]}]: file_name {file!r}: no such file {path}; "
                   f"expected the image under {self.images_dir}")  # fmt: skip
            return None
        try:
            rgb = read_image(path)
        except DataError as e:
            report(str(e))
            return None
        h, w = rgb.shape[:2]
        sample: Sample = {"image": image_tensor(rgb)}
        if self.coco is not None:
            image = self.coco.images[file]
            if (int(image["height"]), int(image["width"])) != (h, w):
                report(f"{self.coco.path}: images[{file!r}]: width x height {image['width']}x{image['height']}; "
                       f"expected the image file's {w}x{h}")  # fmt: skip
                return None
            anns = self.coco.annotations(image)
            if {"detection", "keypoints"} & set(self.tasks):
                boxes, labels, kps = self.coco.instances(image, anns, report)
                sample["boxes"], sample["labels"] = torch.from_numpy(boxes), torch.from_numpy(labels)
                if "keypoints" in self.tasks:
                    sample["keypoints"] = torch.from_numpy(kps)
            if "segmentation" in self.tasks and self.decoder is None:
                sample["segmentation"] = torch.from_numpy(self.coco.semantic(image, anns, self.entry.background, report))
        if self.decoder is not None:
            try:
                seg = self.decoder.read(self.label_path(self.masks_dir, file, self.entry.masks.suffix), (h, w))
                sample["segmentation"] = torch.from_numpy(seg)
            except DataError as e:
                report(str(e))
        if "depth" in self.tasks and self.depth_dir is not None:
            d = self.entry.depth
            try:
                depth = read_depth(self.label_path(self.depth_dir, file, d.suffix), d.scale, (h, w),
                                   encoding=d.encoding, offset=d.offset, baseline_focal=d.baseline_focal)  # fmt: skip
                sample["depth"] = torch.from_numpy(depth)
            except DataError as e:
                report(str(e))
        return resize_sample(sample, self.image_size)

    def iter_checked(self, limit: int | None = None) -> Iterator[tuple[Sample | None, list[str]]]:
        """Every sample (the first `limit`) with its problems (None when its image could not be read)."""
        for i in range(min(len(self.files), limit or len(self.files))):
            found: list[str] = []
            yield self._load(i, found.append), found


def _class_file(path: Path) -> tuple[str, ...]:
    try:
        names = tuple(ln.strip() for ln in path.read_text().splitlines() if ln.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: masks.classes_file: unreadable ({e}); expected one class name per line") from None
    if not names:
        raise DataError(f"{path}: masks.classes_file: empty; expected one class name per line")
    return names


def histograms(samples: Iterator[Sample | None], info: DatasetInfo) -> tuple[np.ndarray, np.ndarray, int]:
    """Pixels per class [C] (+ ignore at the end), instances per thing [T], and the number of samples seen."""
    pixels = np.zeros(len(info.classes) + 1, np.int64)
    objects = np.zeros(len(info.things), np.int64)
    n = 0
    for s in samples:
        if s is None:
            continue
        n += 1
        if "segmentation" in s:
            seg = s["segmentation"].numpy().ravel()
            pixels += np.bincount(np.where(seg == 255, len(info.classes), seg), minlength=len(pixels))[: len(pixels)]
        if "labels" in s and len(objects):
            objects += np.bincount(s["labels"].numpy(), minlength=len(objects))[: len(objects)]
    return pixels, objects, n
