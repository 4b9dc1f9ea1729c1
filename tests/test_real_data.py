"""Real data nobody here wrote, through every format the catalog reads.

imgaug 0.4.0's wheel (installed by `make install` without its dependencies, as test data) ships a real
photograph with real annotations: imgaug/quokka.jpg (960x643), imgaug/quokka_annotations.json (one box
"animal", 7 named keypoints, one polygon outlining the animal) and imgaug/quokka_depth_map_halfres.png
(an 8-bit relative depth map at half resolution; 255 = nearest, 0 = furthest, as imgaug's
`quokka_heatmap` reads it). Each test turns them into a format (COCO JSON with boxes, polygons,
keypoints or RLE; mask folders of label ids or colours; depth folders of 16-bit PNGs or .npy), writes a
catalog.yaml, reads it back through `load_catalog(...).open(...)` or `tmx datasets`, and compares the
values with the original annotation, never with what was read before.

Depth in metres is ours to choose: metres = 0.5 + 4.5 * (1 - value / 255) (near 0.5 m, far 5 m),
upsampled bilinearly to the photo's size, stored as millimetres in 16-bit PNGs (scale 1000, NYU's)
or as float32 metres in .npy.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import run_tmx
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from domains.catalog import load_catalog
from matrix.cli import main

_SPEC = importlib.util.find_spec("imgaug")  # located, never imported: importing it needs cv2
if _SPEC is None:  # not skipped: these are the readers' only test on real data
    raise ImportError("imgaug 0.4.0 (test data: a real photo with real annotations) is not installed; run make install")
IMGAUG = Path(_SPEC.submodule_search_locations[0])
GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"

NAMES = ("ear_tip_left", "ear_tip_right", "eye_left", "eye_right", "nose", "paw_left", "paw_right")
SIGMAS = (0.035, 0.035, 0.025, 0.025, 0.026, 0.06, 0.06)  # ours, given in the catalog (COCO-like magnitudes)
SKELETON = [[1, 3], [2, 4], [3, 5], [4, 5]]  # ears to eyes to nose (1-based, COCO's convention)
COLOURS = {"background": [70, 130, 180], "animal": [220, 20, 60]}
SIZE = 64  # the side samples are read at through the catalog


class Quokka:
    """The original annotation, and the folder every format of it was written into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        ann = json.loads((IMGAUG / "quokka_annotations.json").read_text())
        self.w, self.h = Image.open(IMGAUG / "quokka.jpg").size  # 960 x 643
        b = ann["bounding_boxes"][0]
        self.label, self.box = b["label"], [float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"])]
        points = {p["label"]: (float(p["x"]), float(p["y"])) for p in ann["keypoints"]}
        assert tuple(points) == NAMES
        self.keypoints = np.array([points[n] for n in NAMES], np.float32)  # [7, 2]
        self.polygon = [float(v) for p in ann["polygons"][0]["keypoints"] for v in (p["x"], p["y"])]
        # independent rasterisation of the polygon: PIL's, not pycocotools'
        img = Image.new("L", (self.w, self.h), 0)
        ImageDraw.Draw(img).polygon(self.polygon, fill=1)
        self.pil_mask = np.asarray(img).astype(bool)
        rles = mask_utils.frPyObjects([self.polygon], self.h, self.w)
        self.coco_rle = mask_utils.merge(rles)
        self.coco_mask = mask_utils.decode(self.coco_rle).astype(bool)
        raw = np.asarray(Image.open(IMGAUG / "quokka_depth_map_halfres.png").convert("L"), np.float32)
        half = 0.5 + 4.5 * (1.0 - raw / 255.0)
        self.depth = np.asarray(Image.fromarray(half, "F").resize((self.w, self.h), Image.BILINEAR), np.float32)
        self.write()

    # -- writing every format -----------------------------------------------------------------------

    def write(self) -> None:
        r = self.root
        (r / "images").mkdir(parents=True)
        shutil.copy(IMGAUG / "quokka.jpg", r / "images" / "quokka.jpg")
        x1, y1, x2, y2 = self.box
        image = {"id": 1, "file_name": "quokka.jpg", "width": self.w, "height": self.h}
        kps = [v for x, y in self.keypoints.tolist() for v in (x, y, 2)]
        area = float(mask_utils.area(self.coco_rle))
        full = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": area, "segmentation": [self.polygon], "keypoints": kps, "num_keypoints": len(NAMES)}  # fmt: skip
        animal = {"id": 1, "name": self.label, "supercategory": self.label}
        self._coco("full", image, [animal | {"keypoints": list(NAMES), "skeleton": SKELETON}], full)
        self._coco("boxes", image, [animal], {k: full[k] for k in ("id", "image_id", "category_id", "iscrowd", "bbox")})
        rle = {"size": self.coco_rle["size"], "counts": self.coco_rle["counts"].decode()}
        self._coco("rle", image, [animal], {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle})
        (r / "masks_ids").mkdir()
        Image.fromarray(self.pil_mask.astype(np.uint8)).save(r / "masks_ids" / "quokka.png")
        (r / "masks_colours").mkdir()
        rgb = np.where(self.pil_mask[..., None], COLOURS["animal"], COLOURS["background"]).astype(np.uint8)
        Image.fromarray(rgb).save(r / "masks_colours" / "quokka.png")
        (r / "depth_png").mkdir()
        Image.fromarray(np.round(self.depth * 1000).astype(np.uint16)).save(r / "depth_png" / "quokka.png")
        (r / "depth_npy").mkdir()
        np.save(r / "depth_npy" / "quokka.npy", self.depth)
        sigmas = ", ".join(map(str, SIGMAS))
        val = "{val: {images: images, %s}}"
        (r / "catalog.yaml").write_text(f"""\
datasets:
  quokka:
    domain: close-up
    tasks: [detection, keypoints, segmentation, depth]
    keypoints: {{sigmas: [{sigmas}]}}   # flip pairs from the names
    depth: {{scale: 1000}}
    splits: {val % "coco: annotations/full.json, depth: depth_png"}
  quokka-keypoints:
    domain: close-up
    tasks: [keypoints]
    keypoints: {{sigmas: [{sigmas}]}}
    splits: {val % "coco: annotations/full.json"}
  quokka-boxes: {{domain: close-up, tasks: [detection], splits: {val % "coco: annotations/boxes.json"}}}
  quokka-rle: {{domain: close-up, tasks: [segmentation, detection], splits: {val % "coco: annotations/rle.json"}}}
  quokka-ids:
    domain: close-up
    tasks: [segmentation]
    masks: {{classes: [background, {self.label}]}}
    splits: {val % "masks: masks_ids"}
  quokka-colours:
    domain: close-up
    tasks: [segmentation]
    masks: {{colors: {{background: {COLOURS["background"]}, {self.label}: {COLOURS["animal"]}}}}}
    splits: {val % "masks: masks_colours"}
  quokka-depth-png: {{domain: close-up, tasks: [depth], depth: {{scale: 1000}}, splits: {val % "depth: depth_png"}}}
  quokka-depth-npy: {{domain: close-up, tasks: [depth], depth: {{suffix: .npy}}, splits: {val % "depth: depth_npy"}}}
  quokka-depth-mm-as-m: {{domain: close-up, tasks: [depth], depth: {{scale: 1}}, splits: {val % "depth: depth_png"}}}
""")

    def _coco(self, name: str, image: dict, categories: list[dict], annotation: dict) -> None:
        (self.root / "annotations").mkdir(exist_ok=True)
        data = {"images": [image], "categories": categories, "annotations": [annotation]}
        (self.root / "annotations" / f"{name}.json").write_text(json.dumps(data))

    # -- reading --------------------------------------------------------------------------------------

    @property
    def catalog(self):
        return load_catalog(self.root / "catalog.yaml")

    def sample(self, name: str, size: int | None = SIZE):
        ds = self.catalog.open(name, "val", size)
        assert len(ds) == 1
        return ds[0], ds.info

    def scaled(self, size: int | None) -> tuple[float, float]:
        return (1.0, 1.0) if size is None else (size / self.w, size / self.h)


@pytest.fixture(scope="module")
def quokka(tmp_path_factory) -> Quokka:
    return Quokka(tmp_path_factory.mktemp("quokka"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# -- through the catalog ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, SIZE, 100])
def test_coco_box_and_keypoints_equal_the_annotation_scaled(quokka, size):
    s, info = quokka.sample("quokka", size)
    sx, sy = quokka.scaled(size)
    x1, y1, x2, y2 = quokka.box
    assert info.things == ("animal",) and s["labels"].tolist() == [0]
    assert torch.allclose(s["boxes"], torch.tensor([[x1 * sx, y1 * sy, x2 * sx, y2 * sy]]), atol=1e-4)
    kp = s["keypoints"]
    assert kp.shape == (1, 7, 3) and (kp[0, :, 2] == 2).all()
    assert torch.allclose(kp[0, :, :2], torch.from_numpy(quokka.keypoints * np.float32([sx, sy])), atol=1e-4)
    side = size or quokka.w, size or quokka.h
    assert s["image"].shape == (3, side[1], side[0]) and s["depth"].shape == s["segmentation"].shape == (side[1], side[0])


def test_a_non_person_keypoint_schema_from_the_file_and_the_catalog(quokka):
    _, info = quokka.sample("quokka-keypoints")
    kp = info.keypoints
    assert kp.category == "animal" and kp.names == NAMES
    assert kp.flip_pairs == ((0, 1), (2, 3), (5, 6))  # ear tips, eyes, paws: from the _left/_right names
    assert kp.sigmas == SIGMAS and kp.oks_sigmas() == SIGMAS
    assert kp.skeleton == tuple((a - 1, b - 1) for a, b in SKELETON)


def test_coco_polygon_mask_has_pycocotools_area_and_matches_an_independent_rasterisation(quokka):
    s, info = quokka.sample("quokka", None)
    assert info.classes == ("background", "animal")
    seg = s["segmentation"].numpy()
    assert set(np.unique(seg).tolist()) == {0, 1}
    animal = seg == 1
    coco_area = float(mask_utils.area(quokka.coco_rle))
    xs, ys = np.array(quokka.polygon[0::2]), np.array(quokka.polygon[1::2])
    shoelace = 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))  # the polygon's own area
    assert abs(animal.sum() - coco_area) / coco_area < 0.01
    assert abs(animal.sum() - shoelace) / shoelace < 0.02
    assert _iou(animal, quokka.pil_mask) > 0.98
    small, _ = quokka.sample("quokka", SIZE)  # nearest sampling keeps the share of animal pixels
    share = float((small["segmentation"] == 1).float().mean())
    assert abs(share - coco_area / (quokka.w * quokka.h)) < 0.03


def test_coco_boxes_only_file_for_detection(quokka):
    s, info = quokka.sample("quokka-boxes")
    sx, sy = quokka.scaled(SIZE)
    x1, y1, x2, y2 = quokka.box
    assert set(s) == {"image", "boxes", "labels"} and info.keypoints is None and info.things == ("animal",)
    assert torch.allclose(s["boxes"], torch.tensor([[x1 * sx, y1 * sy, x2 * sx, y2 * sy]]), atol=1e-4)


def test_coco_rle_only_file_for_segmentation_and_detection(quokka):
    s, _ = quokka.sample("quokka-rle", None)
    assert np.array_equal(s["segmentation"].numpy() == 1, quokka.coco_mask)
    assert _iou(s["segmentation"].numpy() == 1, quokka.pil_mask) > 0.98
    xs, ys = quokka.polygon[0::2], quokka.polygon[1::2]  # no bbox in the file: the box around the mask
    assert np.allclose(s["boxes"].numpy(), [[min(xs), min(ys), max(xs), max(ys)]], atol=1.5)


@pytest.mark.parametrize("name", ["quokka-ids", "quokka-colours"])
def test_mask_folders_of_label_ids_and_colours(quokka, name):
    s, info = quokka.sample(name, None)
    assert info.classes == ("background", "animal")
    assert np.array_equal(s["segmentation"].numpy(), quokka.pil_mask.astype(np.int64))
    small, _ = quokka.sample(name, SIZE)
    assert abs(float((small["segmentation"] == 1).float().mean()) - quokka.pil_mask.mean()) < 0.03


@pytest.mark.parametrize("name, tolerance", [("quokka-depth-npy", 0.0), ("quokka-depth-png", 0.0005 + 1e-6)])
def test_depth_folders_in_metres(quokka, name, tolerance):
    s, _ = quokka.sample(name, None)
    assert set(s) == {"image", "depth"} and s["depth"].dtype == torch.float32
    assert np.abs(s["depth"].numpy() - quokka.depth).max() <= tolerance
    small, _ = quokka.sample(name, SIZE)
    assert small["depth"].shape == (SIZE, SIZE)
    assert abs(float(small["depth"].median()) - float(np.median(quokka.depth))) < 0.1


def test_image_decoding_of_real_photos_in_other_modes(tmp_path):
    """A real photo (matplotlib's sample Grace Hopper) as grayscale, grey+alpha, RGBA, palette and CMYK files."""
    photo = Image.open(GRACE)
    rgb = np.asarray(photo.convert("RGB"))
    grey = photo.convert("L")
    variants = {"grey.png": grey, "grey-alpha.png": photo.convert("LA"), "rgba.png": photo.convert("RGBA"),
                "palette.png": photo.convert("P", palette=Image.ADAPTIVE), "grey-jpeg.jpg": grey,
                "cmyk.jpg": photo.convert("CMYK"), "photo.jpg": photo}  # fmt: skip
    for sub in ("img", "masks"):
        (tmp_path / sub).mkdir()
    for name, img in variants.items():
        img.save(tmp_path / "img" / name, quality=95)
        Image.fromarray(np.zeros(rgb.shape[:2], np.uint8)).save(tmp_path / "masks" / f"{Path(name).stem}.png")
    (tmp_path / "cat.yaml").write_text("datasets:\n  hopper:\n    domain: consumer\n    tasks: [segmentation]\n"
                                       "    masks: {classes: [all]}\n"
                                       "    splits: {val: {images: img, masks: masks}}\n")  # fmt: skip
    ds = load_catalog(tmp_path / "cat.yaml").open("hopper", "val", None)
    got = {name: (ds[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
           for i, name in enumerate(ds.files)}  # fmt: skip
    assert sorted(got) == sorted(variants) and all(g.shape == rgb.shape for g in got.values())
    grey_rgb = np.repeat(np.asarray(grey, np.int16)[..., None], 3, -1)
    assert np.array_equal(got["grey.png"], grey_rgb) and np.array_equal(got["grey-alpha.png"], grey_rgb)
    assert np.array_equal(got["rgba.png"], rgb)  # alpha dropped, colours kept
    for name, reference, mean_error in (("palette.png", rgb, 8), ("grey-jpeg.jpg", grey_rgb, 3), ("cmyk.jpg", rgb, 6),
                                        ("photo.jpg", rgb, 3)):  # fmt: skip
        assert np.abs(got[name] - reference).mean() < mean_error, name


# -- through `tmx datasets` -------------------------------------------------------------------------


def test_tmx_check_reads_the_whole_quokka(quokka):
    result = run_tmx("datasets", "check", "quokka", "--catalog", "catalog.yaml", cwd=quokka.root)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "val: 1 images" in out and "things (instances): animal 1" in out and "no problems found" in out
    assert f"keypoints: animal: {', '.join(NAMES)}" in out
    share = float(re.search(r"animal ([\d.]+)%", out).group(1)) / 100
    assert abs(share - mask_utils.area(quokka.coco_rle) / (quokka.w * quokka.h)) < 0.001
    median = float(re.search(r"val depth: median ([\d.]+) m", out).group(1))
    assert abs(median - float(np.median(quokka.depth))) / float(np.median(quokka.depth)) < 0.01


def test_tmx_check_flags_a_depth_scale_1000x_off(quokka):
    result = run_tmx("datasets", "check", "quokka-depth-png", "--catalog", "catalog.yaml", cwd=quokka.root)
    assert result.returncode == 0, result.stdout + result.stderr
    lo, hi = (float(v) for v in re.search(r"1st-99th percentile ([\d.]+)-([\d.]+) m", result.stdout).groups())
    assert abs(lo - np.percentile(quokka.depth, 1)) < 0.05 and abs(hi - np.percentile(quokka.depth, 99)) < 0.05
    result = run_tmx("datasets", "check", "quokka-depth-mm-as-m", "--catalog", "catalog.yaml", cwd=quokka.root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    problem = next(ln for ln in result.stdout.splitlines() if ln.startswith("  problem: "))
    assert problem.startswith(f"  problem: {quokka.root / 'depth_png'}: depth (split val): median ")
    assert "% of valid pixels above 1,000 m; expected depths between 0.01 and 1,000 m" in problem
    assert problem.endswith("check catalog.yaml: datasets.quokka-depth-mm-as-m.depth.scale (1)")  # as given
    assert result.stderr.strip() == "tmx: quokka-depth-mm-as-m: 1 problems in 1 files (listed above)"


@pytest.mark.parametrize("name", ["quokka-boxes", "quokka-keypoints", "quokka-ids", "quokka-depth-npy", "quokka"])
def test_tmx_show_each_task_type_alone_and_all_together(quokka, name, tmp_path):
    out = tmp_path / f"{name}.png"
    result = run_tmx("datasets", "show", name, "--catalog", str(quokka.root / "catalog.yaml"), "-o", str(out),
                     "--image-size", str(SIZE), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    grid = Image.open(out)
    assert grid.format == "PNG" and grid.width >= SIZE and grid.height >= SIZE
    if name in ("quokka-depth-npy", "quokka"):  # the depth tile beside the photo
        assert grid.width >= 2 * SIZE


def test_tmx_export_of_the_quokka_reads_back_identical(quokka, tmp_path):
    out = tmp_path / "export"
    result = run_tmx("datasets", "export", "quokka", "--catalog", str(quokka.root / "catalog.yaml"), "-o", str(out),
                     "--image-size", str(SIZE), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    a, info_a = quokka.sample("quokka")
    back = load_catalog(out / "catalog.yaml").open("quokka", "val", SIZE)
    b, info_b = back[0], back.info
    assert set(b) == set(a) and info_b.things == info_a.things and info_b.classes == info_a.classes
    assert info_b.keypoints == info_a.keypoints  # names, skeleton, flip pairs, sigmas
    for key in ("segmentation", "boxes", "labels", "keypoints", "depth"):
        assert torch.equal(a[key], b[key]), key
    assert (a["image"] - b["image"]).abs().max() <= 0.5 / 255 + 1e-6
    sx, sy = quokka.scaled(SIZE)  # and still the annotation, not just itself
    assert torch.allclose(b["boxes"][0], torch.tensor(quokka.box) * torch.tensor([sx, sy, sx, sy]), atol=1e-4)
    result = CliRunner().invoke(main, ["datasets", "check", "quokka", "--catalog", str(out / "catalog.yaml")])
    assert result.exit_code == 0 and "no problems found" in result.stdout, result.output
