"""domains/formats: COCO JSON, mask and depth folders into the standard form; export round trips; bad data."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from domains.catalog import load_catalog
from domains.formats import DataError
from domains.formats.coco import flip_pairs_from_names
from domains.formats.depth import read_depth, write_depth
from domains.formats.masks import MaskDecoder
from matrix.cli import main

H, W = 20, 30


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def make_coco(root, annotations=None, images=None):
    """Two 30x20 images; a person with 3 keypoints (polygon), a car (uncompressed RLE), a crowd (RLE)."""
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        _png(root / "img" / name, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    car = np.zeros((H, W), bool)
    car[10:16, 20:28] = True
    crowd = np.zeros((H, W), bool)
    crowd[0:4, :] = True
    uncompressed = {"size": [H, W], "counts": [int(c) for c in _runs(car)]}
    data = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                             {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"],
                        "skeleton": [[1, 2], [1, 3]]},
                       {"id": 3, "name": "car"}],
        "annotations": annotations or [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 5, 10, 8], "area": 80, "iscrowd": 0,
             "segmentation": [[2, 5, 12, 5, 12, 13, 2, 13]], "keypoints": [5, 6, 2, 7, 7, 1, 9, 9, 0],
             "num_keypoints": 2},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 10, 8, 6], "area": 48, "iscrowd": 0,
             "segmentation": uncompressed},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 4], "area": 120, "iscrowd": 1,
             "segmentation": _rle(crowd)},
        ],
    }  # fmt: skip
    (root / "ann.json").write_text(json.dumps(data))
    (root / "cat.yaml").write_text(
        "datasets:\n  toy:\n    domain: consumer\n    tasks: [detection, keypoints, segmentation]\n"
        "    splits: {val: {images: img, coco: ann.json}}\n"
    )
    return load_catalog(root / "cat.yaml")


def _runs(mask):
    """Uncompressed COCO RLE counts (column-major runs, starting with zeros)."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], change]))


def test_coco_boxes_keypoints_schema_and_masks(tmp_path):
    ds = make_coco(tmp_path).open("toy", "val", None)
    info = ds.info
    assert info.things == ("person", "car") and info.classes == ("background", "person", "car")
    kp = info.keypoints
    assert kp.category == "person" and kp.names == ("nose", "left_eye", "right_eye")
    assert kp.skeleton == ((0, 1), (0, 2)) and kp.flip_pairs == ((1, 2),)
    s = ds[0]
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32 and 0 <= s["image"].min()
    assert s["boxes"].tolist() == [[2, 5, 12, 13], [20, 10, 28, 16]]  # xywh -> xyxy
    assert s["labels"].tolist() == [0, 1] and s["labels"].dtype == torch.int64
    assert s["keypoints"].shape == (2, 3, 3)
    assert s["keypoints"][0].tolist() == [[5, 6, 2], [7, 7, 1], [0, 0, 0]]  # v=0 -> (0, 0, 0)
    assert s["keypoints"][1].abs().sum() == 0  # a car has no keypoints
    seg = s["segmentation"]
    assert seg.dtype == torch.int64 and seg.shape == (H, W)
    assert (seg[10:16, 20:28] == 2).all() and seg[8, 6] == 1 and seg[0, 0] == 0  # car (RLE), person (polygon)
    crowd = ds[1]
    assert len(crowd["boxes"]) == 0 and (crowd["segmentation"][0:4] == 255).all()  # crowd: no instance, ignore


def test_resize_scales_boxes_keypoints_and_samples_masks_nearest(tmp_path):
    ds = make_coco(tmp_path).open("toy", "val", 60)
    s = ds[0]
    assert s["image"].shape == (3, 60, 60) and s["segmentation"].shape == (60, 60)
    assert torch.allclose(s["boxes"][0], torch.tensor([4.0, 15.0, 24.0, 39.0]))  # x * 2, y * 3
    assert s["keypoints"][0, 0].tolist() == [10, 18, 2] and s["keypoints"][0, 2].tolist() == [0, 0, 0]
    assert set(s["segmentation"].unique().tolist()) <= {0, 1, 2}
    assert len(make_coco(tmp_path).open("toy", "val", 16, count=1)) == 1


def test_flip_pairs_from_names():
    names = ["nose", "left_eye", "right_eye", "l_ankle", "r_ankle", "Left Paw", "Right Paw", "leftover"]
    assert flip_pairs_from_names(names) == ((1, 2), (3, 4), (5, 6))


def test_mask_folders_ids_offset_and_colours(tmp_path):
    raw = np.array([[0, 1, 2], [255, 11, 1]], np.uint8)
    _png(tmp_path / "m.png", raw)
    assert MaskDecoder(("a", "b", "c"), ignore_ids=(11,)).read(tmp_path / "m.png").tolist() == [[0, 1, 2], [255, 255, 1]]
    assert MaskDecoder(("a", "b"), offset=1, ignore_ids=(11,)).read(tmp_path / "m.png").tolist() == [
        [255, 0, 1], [255, 255, 0]]  # fmt: skip
    assert MaskDecoder(("x", "y"), ids={1: "y", 2: "x", 11: None}).read(tmp_path / "m.png").tolist() == [
        [255, 1, 0], [255, 255, 1]]  # fmt: skip
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")  # a palette PNG read through its colours
    colours = MaskDecoder(colors={"red": (255, 0, 0), "green": (0, 255, 0)}, ignore_colors=((0, 0, 0),))
    assert colours.read(tmp_path / "p.png").tolist() == [[255, 0], [1, 0]]
    assert MaskDecoder(("a", "b", "c")).read(tmp_path / "p.png").tolist() == [[0, 1], [2, 1]]  # palette indices = ids


def test_depth_png_npy_and_disparity(tmp_path):
    d = np.array([[0.0, 1.5], [10.25, 200.0]], np.float32)
    write_depth(tmp_path / "d.png", d, scale=256)
    assert np.array_equal(read_depth(tmp_path / "d.png", 256), d)  # exact on the 1/256 m grid
    write_depth(tmp_path / "d.npy", d)
    assert np.array_equal(read_depth(tmp_path / "d.npy"), d)
    _png(tmp_path / "disp.png", np.array([[0, 257], [513, 1]], np.uint16))  # Cityscapes: (p - 1) / 256
    depth = read_depth(tmp_path / "disp.png", 256, encoding="disparity", offset=1, baseline_focal=100.0)
    assert depth.tolist() == [[0, 100], [50, 0]]


def test_export_procedural_reads_back_identical(tmp_path, monkeypatch):
    (tmp_path / "cat.yaml").write_text(
        "datasets:\n  dr: {domain: driving, procedural: {seed: 3, image_size: 32}, splits: {train: {size: 3}, val: {size: 2}}}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["datasets", "export", "dr", "--catalog", str(tmp_path / "cat.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    original = load_catalog(tmp_path / "cat.yaml")
    exported = load_catalog(out / "catalog.yaml")
    assert set(exported.tasks("dr")) == set(original.tasks("dr"))
    for split, n in (("train", 3), ("val", 2)):
        a, b = original.open("dr", split, 32), exported.open("dr", split, 32)
        assert len(b) == n and b.info.classes == a.info.classes and b.info.things == a.info.things
        assert b.info.keypoints == a.info.keypoints  # names, skeleton, flip pairs, sigmas
        for i in range(n):
            x, y = a[i], b[i]
            assert set(x) == set(y)
            for key in ("segmentation", "depth", "boxes", "labels"):
                assert torch.equal(x[key], y[key]), key
            kx = x["keypoints"].clone()
            kx[kx[..., 2] == 0] = 0  # unlabelled points are (0, 0, 0) in COCO
            assert torch.equal(kx, y["keypoints"])
            assert (x["image"] - y["image"]).abs().max() <= 0.5 / 255 + 1e-6
    coco = COCO(str(out / "annotations" / "val.json"))  # pycocotools loads the export as it is
    boxes = sum(len(original.open("dr", "val", 32)[i]["boxes"]) for i in range(2))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == boxes
    assert coco.loadCats(1)[0]["name"] == original.open("dr", "val", 32).info.things[0]


def test_export_png_depth_and_a_subset_of_formats(tmp_path):
    (tmp_path / "cat.yaml").write_text(
        "datasets:\n  uw: {domain: underwater, procedural: {image_size: 24}, splits: {val: {size: 2}}}\n")  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["datasets", "export", "uw", "--catalog", str(tmp_path / "cat.yaml"), "-o", str(out),
                                       "--format", "depth", "--depth-format", "png", "--count", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (out / "annotations").exists() and not (out / "masks").exists()
    back = load_catalog(out / "catalog.yaml").open("uw", "val", 24)
    assert len(back) == 1 and set(back[0]) == {"image", "depth"}
    orig = load_catalog(tmp_path / "cat.yaml").open("uw", "val", 24)[0]["depth"]
    assert (back[0]["depth"] - orig).abs().max() <= 0.5 / 256 + 1e-4


# -- bad data: one error per problem, naming the file ---------------------------------------------


def _masks_catalog(root, n=2, size=(H, W)):
    (root / "depth").mkdir()
    for i in range(n):
        _png(root / "img" / f"{i}.png", np.zeros((H, W, 3), np.uint8))
        _png(root / "masks" / f"{i}.png", np.ones(size, np.uint8))
        np.save(root / "depth" / f"{i}.npy", np.ones((H, W), np.float32))
    (root / "cat.yaml").write_text(
        "datasets:\n  m:\n    domain: driving\n    tasks: [segmentation, depth]\n    masks: {classes: [a, b]}\n"
        "    depth: {suffix: .npy}\n    splits: {train: {images: img, masks: masks, depth: depth}}\n"
    )
    return load_catalog(root / "cat.yaml")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda r: (r / "masks" / "1.png").unlink(), "masks/1.png: mask: no such file"),
        (lambda r: (r / "img" / "1.png").write_bytes(b"not a png"), "img/1.png: image: unreadable"),
        (lambda r: _png(r / "masks" / "1.png", np.full((H, W), 7, np.uint8)), "masks/1.png: mask: label id 7 out of range"),
        (lambda r: _png(r / "masks" / "1.png", np.ones((H, W + 1), np.uint8)),
         "masks/1.png: mask: size 31x20 differs from its image's 30x20"),
        (lambda r: np.save(r / "depth" / "1.npy", np.ones((H - 1, W), np.float32)),
         "depth/1.npy: depth: size 30x19 differs from its image's 30x20"),
    ],
)  # fmt: skip
def test_bad_mask_and_depth_folders_name_the_file(tmp_path, damage, expected):
    catalog = _masks_catalog(tmp_path)
    damage(tmp_path)
    ds = catalog.open("m", "train", 16)
    ds[0]  # the undamaged sample reads
    with pytest.raises(DataError) as e:
        ds[1]
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"bbox": [25, 10, 8, 6]}, "annotation 2 (image a.png): bbox: [25, 10, 8, 6] outside the 30x20 image"),
        ({"category_id": 9}, "annotation 2 (image a.png): category_id 9 out of range"),
        ({"category_id": 1, "keypoints": [1, 2, 2, 3]}, "annotation 2 (image a.png): keypoints: 4 values; expected 9"),
    ],
)  # fmt: skip
def test_bad_coco_annotations_name_the_file_and_annotation(tmp_path, change, expected):
    catalog = make_coco(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["annotations"][1].update(change)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        catalog.open("toy", "val", None)[0]
    assert str(e.value).startswith(f"{tmp_path / 'ann.json'}: ") and expected in str(e.value)


def test_bad_coco_files(tmp_path):
    catalog = make_coco(tmp_path)
    (tmp_path / "ann.json").write_text('{"images": []}')
    with pytest.raises(DataError, match=r"ann.json: annotations: missing or not a list"):
        catalog.open("toy", "val", None)
    (tmp_path / "ann.json").unlink()
    with pytest.raises(DataError, match=r"ann.json: coco: no such file"):
        catalog.open("toy", "val", None)


def test_check_lists_every_problem_and_exits_2(tmp_path):
    catalog = _masks_catalog(tmp_path, n=4)
    _png(tmp_path / "masks" / "1.png", np.full((H, W), 9, np.uint8))
    (tmp_path / "depth" / "2.npy").unlink()
    (tmp_path / "img" / "3.png").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["datasets", "check", "m", "--catalog", str(catalog.file)])
    assert result.exit_code == 2
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("  problem: ")]
    assert len(problems) == 3, result.stdout
    assert any("masks/1.png: mask: label id 9 out of range" in p for p in problems)
    assert any("depth/2.npy: depth: no such file" in p for p in problems)
    assert any("img/3.png: image: unreadable" in p for p in problems)
    assert result.stderr.strip() == "tmx: m: 3 problems in 3 files (listed above)"
    assert "train: 4 images" in result.stdout and "classes (share of pixels): a 0.0%, b 100.0%" in result.stdout


def test_check_a_good_dataset_prints_counts_and_histograms(tmp_path):
    catalog = make_coco(tmp_path)
    result = CliRunner().invoke(main, ["datasets", "check", "toy", "--catalog", str(catalog.file)])
    assert result.exit_code == 0, result.output
    assert "val: 2 images" in result.stdout and "things (instances): person 1, car 1" in result.stdout
    assert "no problems found" in result.stdout


def test_show_draws_a_grid(tmp_path):
    catalog = make_coco(tmp_path)
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["datasets", "show", "toy", "--catalog", str(catalog.file), "-o", str(out),
                                       "--image-size", "32", "--per-row", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    img = Image.open(out)
    assert img.width > 2 * 32 and img.height > 32


# -- regressions: real files the readers met (issue 13, item 5) ------------------------------------


def _plain_coco(root, kind):
    """A COCO file without keypoints: boxes only, polygons only (no bbox) or RLE only (no bbox)."""
    rng = np.random.default_rng(1)
    _png(root / "img" / "a.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    car = np.zeros((H, W), bool)
    car[10:16, 20:28] = True
    ann = {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0}
    if kind == "boxes":
        ann |= {"bbox": [20, 10, 8, 6], "area": 48}
    elif kind == "polygons":
        ann |= {"segmentation": [[20, 10, 28, 10, 28, 16, 20, 16]]}
    else:
        ann |= {"segmentation": _rle(car)}
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "categories": [{"id": 3, "name": "car"}], "annotations": [ann]}  # fmt: skip
    (root / "ann.json").write_text(json.dumps(data))
    tasks = "[detection]" if kind == "boxes" else "[detection, segmentation]"
    (root / "cat.yaml").write_text(f"datasets:\n  plain:\n    domain: driving\n    tasks: {tasks}\n"
                                   "    splits: {val: {images: img, coco: ann.json}}\n")  # fmt: skip
    return load_catalog(root / "cat.yaml")


@pytest.mark.parametrize("kind", ["boxes", "polygons", "rle"])
def test_coco_without_keypoints_loads_for_detection_and_segmentation(tmp_path, kind):
    catalog = _plain_coco(tmp_path, kind)
    s = catalog.open("plain", "val", None)[0]
    assert "keypoints" not in s and s["labels"].tolist() == [0]
    assert s["boxes"].tolist() == [[20, 10, 28, 16]]  # from the bbox, or around the polygon / RLE without one
    if kind != "boxes":
        assert (s["segmentation"][10:16, 20:28] == 1).all() and int((s["segmentation"] == 1).sum()) == 48
    runner, cat = CliRunner(), str(catalog.file)
    for args in (["check", "plain"], ["show", "plain", "-o", str(tmp_path / "g.png"), "--image-size", "32"],
                 ["export", "plain", "-o", str(tmp_path / "out"), "--image-size", "32"]):  # fmt: skip
        result = runner.invoke(main, ["datasets", *args, "--catalog", cat])
        assert result.exit_code == 0, (args, result.output, result.exception)
    back = load_catalog(tmp_path / "out" / "catalog.yaml").open("plain", "val", 32)[0]
    assert torch.equal(back["boxes"], catalog.open("plain", "val", 32)[0]["boxes"])


@pytest.mark.parametrize("tasks", ["[segmentation]", "[depth]", "[segmentation, depth]"])
def test_show_draws_segmentation_only_and_depth_only_entries(tmp_path, tasks):
    catalog = _masks_catalog(tmp_path)
    (tmp_path / "cat.yaml").write_text(catalog.file.read_text().replace("[segmentation, depth]", tasks))
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["datasets", "show", "m", "--catalog", str(catalog.file), "-o", str(out),
                                       "--image-size", "32"])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert Image.open(out).width > 32


@pytest.mark.parametrize("tasks", ["[detection]", "[keypoints]", "[segmentation]", "[detection, keypoints, segmentation]"])
def test_show_draws_each_coco_task_type_alone(tmp_path, tasks):
    catalog = make_coco(tmp_path)
    (tmp_path / "cat.yaml").write_text(catalog.file.read_text().replace("[detection, keypoints, segmentation]", tasks))
    result = CliRunner().invoke(main, ["datasets", "show", "toy", "--catalog", str(catalog.file), "-o",
                                       str(tmp_path / "grid.png"), "--image-size", "32"])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "grid.png").is_file()


def _depth_png_catalog(root, scale):
    """Two images with 16-bit depth PNGs in millimetres (0.5-4 m), declared at `scale`."""
    for i in range(2):
        _png(root / "img" / f"{i}.png", np.zeros((H, W, 3), np.uint8))
        mm = np.linspace(500, 4000, H * W).reshape(H, W).astype(np.uint16)
        mm[0] = 0  # a row of invalid pixels
        _png(root / "depth" / f"{i}.png", mm)
    (root / "cat.yaml").write_text("datasets:\n  nyu:\n    domain: indoor\n    tasks: [depth]\n"
                                   f"    depth: {{scale: {scale}}}\n"
                                   "    splits: {val: {images: img, depth: depth}}\n")  # fmt: skip
    return root / "cat.yaml"


def test_check_reports_the_depth_range_in_metres(tmp_path):
    result = CliRunner().invoke(main, ["datasets", "check", "nyu", "--catalog", str(_depth_png_catalog(tmp_path, 1000))])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if "val depth" in ln)
    assert "median 2.33 m" in line and "1st-99th percentile 0.704-3.96 m" in line, line  # numpy: 2.337, 0.708, 3.966
    assert "95% of pixels valid" in line, line


@pytest.mark.parametrize("scale, shown", [(1, "median 2,330 m; 90% of valid pixels above 1,000 m"),
                                          (1_000_000, "median 0.00233 m; 100% of valid pixels below 0.01 m")])  # fmt: skip
def test_check_fails_a_depth_scale_1000x_off(tmp_path, scale, shown):
    cat = _depth_png_catalog(tmp_path, scale)
    result = CliRunner().invoke(main, ["datasets", "check", "nyu", "--catalog", str(cat)])
    assert result.exit_code == 2, result.output
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("  problem: ")]
    assert problems == [f"  problem: {tmp_path / 'depth'}: depth (split val): {shown}; expected depths between 0.01 "
                        f"and 1,000 m: check {cat}: datasets.nyu.depth.scale ({scale:,})"], result.stdout  # fmt: skip
    assert result.stderr.strip() == "tmx: nyu: 1 problems in 1 files (listed above)"


def test_coco_annotations_of_unknown_images_and_missing_image_files_are_problems(tmp_path):
    catalog = make_coco(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["annotations"] += [{"id": 7, "image_id": 40, "category_id": 3, "bbox": [1, 1, 2, 2]},
                            {"id": 8, "image_id": "b.png", "category_id": 3, "bbox": [1, 1, 2, 2]}]  # fmt: skip
    data["images"].append({"id": 5, "file_name": "sub/gone.png", "width": W, "height": H})
    (tmp_path / "ann.json").write_text(json.dumps(data))
    json_file = tmp_path / "ann.json"
    result = CliRunner().invoke(main, ["datasets", "check", "toy", "--catalog", str(catalog.file)])
    assert result.exit_code == 2
    problems = [ln.removeprefix("  problem: ") for ln in result.stdout.splitlines() if ln.startswith("  problem: ")]
    assert problems == [
        f"{json_file}: annotation 7: image_id 40 is not among the images; expected the id of an `images` entry",
        f"{json_file}: annotation 8: image_id 'b.png' is not among the images; expected the id of an `images` entry",
        f"{json_file}: images[2]: file_name 'sub/gone.png': no such file {tmp_path / 'img' / 'sub' / 'gone.png'}; "
        f"expected the image under {tmp_path / 'img'}",
    ], result.stdout  # fmt: skip
    assert result.stderr.strip() == "tmx: toy: 3 problems in 1 files (listed above)"
    with pytest.raises(DataError) as e:  # reading (show, export, training) stops at the first, in one line
        catalog.open("toy", "val", None)[0]
    assert str(e.value).startswith(f"{json_file}: annotation 7: image_id 40") and "\n" not in str(e.value)
    result = CliRunner().invoke(main, ["datasets", "export", "toy", "--catalog", str(catalog.file), "-o",
                                       str(tmp_path / "out"), "--image-size", "16"])  # fmt: skip
    assert result.exit_code == 2 and result.stderr.startswith(f"tmx: {json_file}: annotation 7: ")
    assert result.stderr.strip().endswith("(and 1 more problem: tmx datasets check lists them)")


@pytest.mark.parametrize(
    "keypoints, expected",
    [
        ("{sigmas: [0.1, 0.1]}", "datasets.toy.keypoints.sigmas: 2 values; expected 3, one per keypoint of 'person'"),
        ("{flip_pairs: [[left_eye, right_ear]]}",
         "datasets.toy.keypoints.flip_pairs: 'right_ear' is not a keypoint of 'person'"),
    ],
)  # fmt: skip
def test_keypoint_spec_errors_name_the_catalog_and_field(tmp_path, keypoints, expected):
    catalog = make_coco(tmp_path)
    text = catalog.file.read_text().replace("    splits:", f"    keypoints: {keypoints}\n    splits:")
    catalog.file.write_text(text)
    with pytest.raises(DataError) as e:
        load_catalog(catalog.file).open("toy", "val", None)
    assert str(e.value).startswith(f"{catalog.file}: {expected}") and "\n" not in str(e.value)
    assert str(tmp_path / "ann.json") in str(e.value)  # and where the keypoints were declared
    for args in (["check", "toy"], ["show", "toy", "-o", str(tmp_path / "g.png")]):
        result = CliRunner().invoke(main, ["datasets", *args, "--catalog", str(catalog.file)])
        assert result.exit_code == 2 and result.stderr.strip() == f"tmx: {e.value}", result.output


def test_a_non_person_keypoint_schema(tmp_path):
    names = ["ear_tip_left", "ear_tip_right", "nose", "paw-left", "paw-right"]
    catalog = make_coco(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["categories"][0] = {"id": 1, "name": "animal", "keypoints": names, "skeleton": [[1, 3], [2, 3]]}
    data["annotations"][0]["keypoints"] = [5, 6, 2, 7, 7, 1, 9, 9, 2, 3, 12, 2, 0, 0, 0]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = catalog.open("toy", "val", None)
    kp = ds.info.keypoints
    assert kp.category == "animal" and kp.names == tuple(names) and kp.flip_pairs == ((0, 1), (3, 4))
    assert kp.sigmas == () and kp.oks_sigmas() == (0.05,) * 5  # none given: 0.05 each
    assert ds[0]["keypoints"][0].tolist() == [[5, 6, 2], [7, 7, 1], [9, 9, 2], [3, 12, 2], [0, 0, 0]]
    sigmas = "    keypoints: {sigmas: [.1, .2, .3, .4, .5]}\n    splits:"
    catalog.file.write_text(catalog.file.read_text().replace("    splits:", sigmas))
    assert load_catalog(catalog.file).open("toy", "val", None).info.keypoints.oks_sigmas() == (.1, .2, .3, .4, .5)


def test_coco_images_with_a_bad_size_or_a_repeated_file_name(tmp_path):
    catalog = make_coco(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["images"].append({"id": 9, "file_name": "a.png", "width": W, "height": H})
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = catalog.open("toy", "val", None)
    assert ds.file_problems == [f"{tmp_path / 'ann.json'}: images[2]: file_name 'a.png' repeats images[0]'s; expected "
                                f"each image once (merge their annotations under one id)"]  # fmt: skip
    data["images"][1]["height"] = None
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"ann.json: images\[1\]: width x height 30xNone; expected the image's size"):
        catalog.open("toy", "val", None)


def test_mask_ids_naming_an_unknown_class_name_the_catalog_field(tmp_path):
    catalog = _masks_catalog(tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    text = catalog.file.read_text().replace("masks: {classes: [a, b]}", "masks: {classes_file: classes.txt, ids: {1: c}}")
    catalog.file.write_text(text)
    with pytest.raises(DataError) as e:
        load_catalog(catalog.file).open("m", "train", None)
    assert str(e.value).startswith(f"{catalog.file}: datasets.m.masks.ids: class 'c' is not one of the classes")


def test_export_of_depth_too_deep_for_a_16_bit_png_is_one_line(tmp_path):
    _masks_catalog(tmp_path)
    np.save(tmp_path / "depth" / "0.npy", np.full((H, W), 300.0, np.float32))  # 300 m > 65535 / 256
    result = CliRunner().invoke(main, ["datasets", "export", "m", "--catalog", str(tmp_path / "cat.yaml"), "-o",
                                       str(tmp_path / "out"), "--image-size", "16", "--depth-format", "png"])  # fmt: skip
    assert result.exit_code == 2 and "does not fit a 16-bit PNG at scale 256; expected --depth-format npy" in result.stderr
