"""COCO JSON: instances (boxes, labels, keypoints with the file's own schema) and semantic masks.

    coco = CocoFile.load(Path("annotations/person_keypoints_val2017.json"))
    coco.things                      # category names, by category id: `labels` index into them
    coco.keypoints                   # KeypointSchema of the category that has keypoints, or None
    coco.problems                    # file-level problems that spoil no image (annotations of unknown images)
    anns = coco.annotations(image)   # the raw annotations of one `images` entry
    boxes, labels, kps = coco.instances(image, anns, report)   # float32 [N, 4] xyxy, int64 [N], float32 [N, K, 3]
    seg = coco.semantic(image, anns, classes, report)          # int64 [H, W]; crowd -> 255

The file is read by pycocotools (`COCO`), masks come from its `annToMask`
(polygons, RLE and uncompressed RLE alike). Boxes are COCO [x, y, w, h] in
pixels, turned into xyxy; an annotation without `bbox` gets the box around its
`segmentation` (files with only polygons or only RLE). Crowd annotations are not
instances (their region is ignore, 255, in the semantic mask). Zero-area boxes
are dropped. Files without keypoints give keypoints [N, 0, 3]. `report`
receives one line per problem (the caller raises on it, or collects them).

The catalog's keypoint details (flip pairs, OKS sigmas) are checked against the
file's keypoint names; their errors name where they were declared (`spec_at`,
e.g. "catalog.yaml: datasets.coco.keypoints"), not the JSON.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from domains.base import IGNORE, KeypointSchema
from domains.formats.files import DataError, read_coco

Report = Callable[[str], None]
BOX_TOLERANCE = 1.0  # pixels a box may pass the image border by (rounding in real annotations); clipped
# OKS sigmas of COCO's 17 person keypoints (pycocotools' COCOeval), used when a file has exactly these names
COCO_PERSON = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle")  # fmt: skip
COCO_PERSON_SIGMAS = (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089)
_SIDES = (("left", "right"), ("l", "r"))


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Index pairs of keypoints whose names differ only in a left/right token (left_eye/right_eye, l_ankle/r_ankle)."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        tokens = re.split(r"([_\-\s.])", name.lower())
        for left, right in _SIDES:
            if left in tokens:
                j = index.get("".join(right if t == left else t for t in tokens))
                if j is not None and j != i:
                    pairs.append((i, j))
    return tuple(pairs)


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return fn()


class CocoFile:
    """One COCO JSON file, indexed by pycocotools; see the module docstring."""

    def __init__(self, path: Path, coco: COCO, keypoints: KeypointSchema | None) -> None:
        self.path, self.coco, self.keypoints = path, coco, keypoints
        self.category_ids = sorted(coco.cats)
        self.things = tuple(str(coco.cats[c]["name"]) for c in self.category_ids)
        self.label_of = {c: i for i, c in enumerate(self.category_ids)}
        self.kp_category = None
        if keypoints is not None:
            self.kp_category = next(c for c in self.category_ids if coco.cats[c].get("keypoints"))
        self.images = {str(img["file_name"]): img for img in coco.dataset["images"]}
        self.image_index = {str(img["file_name"]): i for i, img in enumerate(coco.dataset["images"])}
        self.problems = [f"{path}: annotation {ann['id']}: image_id {ann['image_id']!r} is not among the images; "
                         f"expected the id of an `images` entry"
                         for ann in coco.dataset["annotations"] if ann["image_id"] not in coco.imgs]  # fmt: skip
        if len(self.images) < len(coco.dataset["images"]):
            names = [str(img["file_name"]) for img in coco.dataset["images"]]
            self.problems += [f"{path}: images[{i}]: file_name {n!r} repeats images[{names.index(n)}]'s; expected each "
                              f"image once (merge their annotations under one id)"
                              for i, n in enumerate(names) if names.index(n) != i]  # fmt: skip

    @classmethod
    def load(cls, path: Path, flip_pairs: Sequence[tuple[str, str]] | None = None,
             sigmas: Sequence[float] | None = None, spec_at: str = "keypoints") -> CocoFile:  # fmt: skip
        """Read and check the file's structure; DataError (one line) when it is not COCO JSON.

        `flip_pairs` and `sigmas` come from `spec_at` (e.g. "catalog.yaml: datasets.NAME.keypoints"), which
        their errors name."""
        data = read_coco(path)
        coco = COCO()
        coco.dataset = data
        _quiet(coco.createIndex)
        return cls(path, coco, cls._schema(path, data["categories"], flip_pairs, sigmas, spec_at))

    @staticmethod
    def _schema(path: Path, categories: list[dict], flip_pairs, sigmas, spec_at: str) -> KeypointSchema | None:
        with_kp = [c for c in categories if c.get("keypoints")]
        if not with_kp:
            return None
        if len(with_kp) > 1:
            names = ", ".join(repr(c["name"]) for c in with_kp)
            raise DataError(f"{path}: categories: keypoints on {names}; expected keypoints on one category")
        cat = with_kp[0]
        names = tuple(str(n) for n in cat["keypoints"])
        k = len(names)
        skeleton = []
        for edge in cat.get("skeleton") or ():
            if len(edge) != 2 or not all(isinstance(v, int) and 1 <= v <= k for v in edge):
                raise DataError(f"{path}: categories[{cat['name']!r}].skeleton: edge {edge}; "
                                f"expected pairs of 1-based keypoint indices in 1..{k}")  # fmt: skip
            skeleton.append((edge[0] - 1, edge[1] - 1))
        if flip_pairs is None:
            pairs = flip_pairs_from_names(names)
        else:
            unknown = [n for pair in flip_pairs for n in pair if n not in names]
            if unknown:
                raise DataError(f"{spec_at}.flip_pairs: {unknown[0]!r} is not a keypoint of {cat['name']!r} "
                                f"(in {path}); expected one of: {', '.join(names)}")  # fmt: skip
            seen = [n for pair in flip_pairs for n in pair]
            twice = next((n for n in seen if seen.count(n) > 1), None)
            if twice is not None or any(a == b for a, b in flip_pairs):
                shown = twice if twice is not None else next(a for a, b in flip_pairs if a == b)
                raise DataError(f"{spec_at}.flip_pairs: {shown!r} appears twice; expected each keypoint of "
                                f"{cat['name']!r} in at most one [left, right] pair")  # fmt: skip
            pairs = tuple((names.index(a), names.index(b)) for a, b in flip_pairs)
        if sigmas is not None and len(sigmas) != k:
            raise DataError(f"{spec_at}.sigmas: {len(sigmas)} values; expected {k}, one per keypoint of "
                            f"{cat['name']!r} (in {path}: {', '.join(names)})")  # fmt: skip
        sig = tuple(sigmas) if sigmas is not None else (COCO_PERSON_SIGMAS if names == COCO_PERSON else ())
        return KeypointSchema(str(cat["name"]), names, tuple(skeleton), pairs, sig)

    def annotations(self, image: dict) -> list[dict]:
        return self.coco.imgToAnns.get(image["id"], [])

    def instances(self, image: dict, anns: list[dict], report: Report) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-crowd annotations as boxes xyxy [N, 4], labels [N] and keypoints [N, K, 3] (K = 0 without a schema)."""
        w, h = float(image["width"]), float(image["height"])
        k = len(self.keypoints.names) if self.keypoints else 0
        boxes, labels, kps = [], [], []
        for ann in anns:
            where = f"{self.path}: annotation {ann['id']} (image {image['file_name']})"
            if ann["category_id"] not in self.label_of:
                report(f"{where}: category_id {ann['category_id']!r} out of range; expected one of the "
                       f"categories' ids {self.category_ids[:10]}")  # fmt: skip
                continue
            if ann.get("iscrowd", 0):
                continue
            bbox = ann.get("bbox")
            if bbox is None and ann.get("segmentation"):
                bbox = self._segmentation_box(image, ann, where, report)
                if bbox is None:
                    continue
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
                report(f"{where}: bbox: {bbox!r}; expected [x, y, width, height] in pixels")
                continue
            x, y, bw, bh = (float(v) for v in bbox)
            t = BOX_TOLERANCE
            if bw < 0 or bh < 0 or x < -t or y < -t or x + bw > w + t or y + bh > h + t:
                report(f"{where}: bbox: [{x:g}, {y:g}, {bw:g}, {bh:g}] outside the {w:g}x{h:g} image; "
                       f"expected x, y >= 0, x + width <= {w:g}, y + height <= {h:g}")  # fmt: skip
                continue
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)
            if x2 <= x1 or y2 <= y1:
                continue  # zero area: not an object a detector can learn
            points = np.zeros((k, 3), np.float32)
            if k and ann["category_id"] == self.kp_category and ann.get("keypoints") is not None:
                raw = ann["keypoints"]
                if not isinstance(raw, list) or len(raw) != 3 * k:
                    n = len(raw) if isinstance(raw, list) else type(raw).__name__
                    report(f"{where}: keypoints: {n} values; expected {3 * k} (x, y, visibility for each of "
                           f"{k} keypoints)")  # fmt: skip
                    continue
                points = np.asarray(raw, np.float32).reshape(k, 3)
                if not np.isin(points[:, 2], (0, 1, 2)).all():
                    report(f"{where}: keypoints: visibility {sorted(set(points[:, 2].tolist()))}; expected 0, 1 or 2")
                    continue
                points[points[:, 2] == 0] = 0.0
            boxes.append((x1, y1, x2, y2))
            labels.append(self.label_of[ann["category_id"]])
            kps.append(points)
        return (np.asarray(boxes, np.float32).reshape(len(boxes), 4), np.asarray(labels, np.int64),
                np.asarray(kps, np.float32).reshape(len(kps), k, 3))  # fmt: skip

    def _segmentation_box(self, image: dict, ann: dict, where: str, report: Report) -> list[float] | None:
        """[x, y, w, h] around an annotation's polygons/RLE (for files without `bbox`); None after a report."""
        h, w = int(image["height"]), int(image["width"])
        try:
            rle = self.coco.annToRLE(ann)
            size = [int(v) for v in rle["size"]]
            if isinstance(rle["counts"], str):
                rle = {"size": size, "counts": rle["counts"].encode()}
            box = [float(v) for v in mask_utils.toBbox(rle)]
        except Exception as e:  # pycocotools raises bare exceptions on malformed segmentations
            report(f"{where}: segmentation: unreadable ({type(e).__name__}: {e}); expected polygons or RLE "
                   f"(or a bbox)")  # fmt: skip
            return None
        if size != [h, w]:
            report(f"{where}: segmentation: size {size[1]}x{size[0]}; expected the image's {w}x{h}")
            return None
        return box

    def semantic(self, image: dict, anns: list[dict], background: bool, report: Report) -> np.ndarray:
        """A semantic mask int64 [H, W] from the annotations' polygons/RLE: class = category's position in
        `things` (+1 with a background class 0; else unlabelled pixels are 255). Crowd regions are 255
        unless an instance covers them; larger instances are painted first, so small ones stay visible."""
        h, w = int(image["height"]), int(image["width"])
        seg = np.full((h, w), 0 if background else IGNORE, np.int64)
        order = sorted((a for a in anns if a.get("segmentation") and a["category_id"] in self.label_of),
                       key=lambda a: (not a.get("iscrowd", 0), -float(a.get("area", 0))))  # fmt: skip
        for ann in order:
            try:
                mask = self.coco.annToMask(ann).astype(bool)
            except Exception as e:  # pycocotools raises bare exceptions on malformed polygons
                report(f"{self.path}: annotation {ann['id']} (image {image['file_name']}): segmentation: "
                       f"unreadable ({type(e).__name__}: {e}); expected polygons or RLE")  # fmt: skip
                continue
            if mask.shape != (h, w):
                report(f"{self.path}: annotation {ann['id']}: segmentation: size {mask.shape[1]}x{mask.shape[0]}; "
                       f"expected the image's {w}x{h}")  # fmt: skip
                continue
            seg[mask] = IGNORE if ann.get("iscrowd", 0) else self.label_of[ann["category_id"]] + int(background)
        return seg


def coco_categories(things: Sequence[str], keypoints: KeypointSchema | None) -> list[dict]:
    """COCO categories for `things` (id = position + 1); the keypoint category carries names and skeleton."""
    cats = []
    for i, name in enumerate(things):
        cat: dict[str, Any] = {"id": i + 1, "name": name, "supercategory": name}
        if keypoints is not None and name == keypoints.category:
            cat["keypoints"] = list(keypoints.names)
            cat["skeleton"] = [[a + 1, b + 1] for a, b in keypoints.skeleton]
        cats.append(cat)
    return cats


def coco_annotations(image_id: int, first_id: int, boxes: np.ndarray, labels: np.ndarray,
                     keypoints: np.ndarray | None, kp_label: int | None) -> list[dict]:  # fmt: skip
    """COCO annotations of one image from boxes xyxy [N, 4], labels [N] and keypoints [N, K, 3]."""
    anns = []
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        x1, y1, x2, y2 = box
        ann: dict[str, Any] = {"id": first_id + i, "image_id": image_id, "category_id": label + 1,
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}  # fmt: skip
        if keypoints is not None and label == kp_label:
            kp = keypoints[i].copy()
            kp[kp[:, 2] == 0] = 0.0
            ann["keypoints"] = [float(v) if j % 3 != 2 else int(v) for j, v in enumerate(kp.reshape(-1).tolist())]
            ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
        anns.append(ann)
    return anns
