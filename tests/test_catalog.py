"""The dataset catalog: schema errors, tmx datasets, and studies that list catalog datasets."""

import builtins
import io
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, plan_loads, run_tmx
from PIL import Image

from domains.catalog import CatalogError, load_catalog
from matrix.cli import main
from matrix.execute import dataset
from matrix.plan import plan
from matrix.spec import SpecError, load_study
from matrix.store import Storage

CATALOG = """\
root: data
datasets:
  street:
    domain: driving
    tasks: [segmentation, depth]
    masks: {classes: [road, car]}
    depth: {suffix: .png, scale: 256}
    splits:
      train: {images: street/img/train, masks: street/masks/train, depth: street/depth/train}
      val: {images: street/img/val, masks: street/masks/val, depth: street/depth/val}
  cube: {domain: indoor, procedural: {seed: 1, image_size: 32}, splits: {train: {size: 40}, val: {size: 4}}}
"""

STUDY = """\
name: s
catalog: catalog.yaml
target_sizes: [4]
datasets:
  - {name: town, domain: driving, train: 8, val: 4}
  - {catalog: street}
  - {catalog: cube, name: room, tasks: [depth]}
"""


def _street(root, n_train=6, n_val=2):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            for sub, arr in (("img", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)),
                             ("masks", rng.integers(0, 2, (24, 32), dtype=np.uint8)),
                             ("depth", rng.integers(0, 5000, (24, 32)).astype(np.uint16))):  # fmt: skip
                path = root / "data" / "street" / sub / split / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)


@pytest.fixture
def study_dir(tmp_path):
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "study.yaml").write_text(STUDY)
    _street(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "change, expected",
    [
        (("domain: driving", "domian: driving"), "datasets.street.domian: unknown key 'domian'; expected one of: domain, tasks"),
        (("domain: driving", "domain: forest"), "datasets.street.domain: unknown domain 'forest'; expected one of: consumer, driving"),
        (("tasks: [segmentation, depth]", "tasks: [segmentation, depth, detection]"),
         "datasets.street.splits.train: task 'detection' needs coco: expected a path to its labels"),
        (("tasks: [segmentation, depth]", "tasks: [segmentation, depht]"), "datasets.street.tasks[1]: unknown task 'depht'"),
        (("masks: {classes: [road, car]}", "masks: {classes: [road], colors: {car: [1, 2, 3]}}"),
         "datasets.street.masks: expected one of classes or classes_file (label-id PNGs) or colors"),
        (("depth: {suffix: .png, scale: 256}", "depth: {scale: -1}"), "datasets.street.depth.scale: Input should be greater than 0"),
        (("{train: {size: 40}", "{train: {size: 40, images: x}"), "datasets.cube.splits.train: a procedural split has only a size"),
        (("    masks: {classes: [road, car]}\n", ""), "datasets.street.splits.train.masks: a mask folder needs a masks section"),
    ],
)  # fmt: skip
def test_bad_catalog_is_one_line_naming_the_field(tmp_path, change, expected):
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.replace(*change))
    with pytest.raises(CatalogError) as e:
        load_catalog(path)
    assert str(e.value).startswith(f"{path}: ") and expected in str(e.value) and "\n" not in str(e.value)
    result = CliRunner().invoke(main, ["datasets", "--catalog", str(path)])
    assert result.exit_code == 2 and result.stderr.strip() == f"tmx: {e.value}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- street\n", "expected a mapping of catalog fields at the top level, got list"),
        ("root: [data\n", "line 2: invalid YAML"),
        ("root: data\ndatasets: {}\n", "datasets: Dictionary should have at least 1 item after validation"),
        ("roots: data\n", "roots: unknown key 'roots'; expected one of: root, datasets"),
    ],
)  # fmt: skip
def test_bad_catalog_file_from_the_shell_is_one_line(tmp_path, text, expected):
    (tmp_path / "cat.yaml").write_text(text)
    result = run_tmx("datasets", "--catalog", "cat.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(f"tmx: cat.yaml: {expected}")
    result = run_tmx("datasets", "--catalog", "none.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "none.yaml: no such catalog file" in result.stderr


def test_catalog_is_frozen_and_hashes_its_entries(study_dir):
    catalog = load_catalog(study_dir / "catalog.yaml")
    with pytest.raises(Exception):
        catalog.root = "elsewhere"
    digest = catalog.get("street").digest()
    (study_dir / "catalog.yaml").write_text(CATALOG.replace("root: data", "root: ./data"))
    assert load_catalog(study_dir / "catalog.yaml").get("street").digest() == digest  # the root is not content
    (study_dir / "catalog.yaml").write_text(CATALOG.replace("scale: 256", "scale: 1000"))
    assert load_catalog(study_dir / "catalog.yaml").get("street").digest() != digest
    with pytest.raises(CatalogError, match="unknown dataset 'nope'; expected one of: cube, street"):
        catalog.get("nope")


def test_datasets_lists_present_missing_and_procedural(study_dir):
    runner = CliRunner()
    result = runner.invoke(main, ["datasets", "--catalog", str(study_dir / "catalog.yaml")])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "present" in rows["street"] and "segmentation, depth" in rows["street"] and "procedural" in rows["cube"]
    shutil.rmtree(study_dir / "data" / "street" / "depth")
    result = runner.invoke(main, ["datasets", "--catalog", str(study_dir / "catalog.yaml")])
    assert "missing (2 paths)" in result.stdout
    result = runner.invoke(main, ["datasets", "check", "street", "--catalog", str(study_dir / "catalog.yaml")])
    assert result.exit_code == 2 and "street: missing on disk:" in result.stderr and "(train depth)" in result.stderr
    result = runner.invoke(main, ["datasets", "check", "nope", "--catalog", str(study_dir / "catalog.yaml")])
    assert result.exit_code == 2 and "unknown dataset 'nope'; expected one of: cube, street" in result.stderr
    result = runner.invoke(main, ["datasets", "--catalog", str(study_dir / "none.yaml")])
    assert result.exit_code == 2 and result.stderr.strip().endswith("none.yaml: no such catalog file; pass --catalog FILE")


def test_repo_catalog_loads_and_mensink_names_the_fids_datasets():
    catalog = load_catalog(REPO / "configs" / "catalog.yaml")
    domains = {catalog.get(n).domain for n in catalog.datasets}
    assert domains == {"consumer", "driving", "aerial", "underwater", "indoor", "synthetic", "close-up"}
    assert set(catalog.get("coco").tasks) == {"detection", "segmentation"} and catalog.get("coco-keypoints").tasks == ("keypoints",)
    assert set(catalog.get("cityscapes").tasks) == {"segmentation", "detection", "depth"}
    study = load_study(REPO / "configs" / "mensink.yaml")
    assert study.target_sizes == (150, 1000)
    assert {study.dataset_domain(ds) for ds in study.datasets} == domains


def test_mensink_plan_without_the_data_lists_every_missing_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plan", str(REPO / "configs" / "mensink.yaml")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "25 catalog datasets are not on disk" in lines[0] and "docs/datasets.md" in lines[0]
    assert len(lines) == 26 and any(ln.startswith("  cityscapes: ") and "leftImg8bit/train (train images)" in ln for ln in lines)
    assert not (tmp_path / "outputs").exists()


def test_study_takes_domain_and_tasks_from_the_catalog(study_dir):
    study = load_study(study_dir / "study.yaml")
    town, street, room = study.datasets
    assert study.dataset_domain(street) == "driving" and study.dataset_tasks(street) == ("segmentation", "depth")
    assert study.dataset_domain(room) == "indoor" and study.dataset_tasks(room) == ("depth",)
    assert study.split_size(street, "train") == 6  # counted on disk
    assert study.split_size(room, "train") == 40  # declared
    jobs = plan(study)
    src = next(j for j in jobs if j.kind == "source" and j.train.dataset == "street")
    assert src.train.catalog == ("street", load_catalog(study_dir / "catalog.yaml").get("street").digest())
    assert src.source.domain == "driving" and src.source.size == 6 and src.eval.count == 2


def test_catalog_keys_follow_the_entry_not_its_location(study_dir, tmp_path_factory):
    keys = {j.name: j.key for j in plan(load_study(study_dir / "study.yaml"))}
    moved = tmp_path_factory.mktemp("moved")
    shutil.copytree(study_dir, moved, dirs_exist_ok=True)
    assert {j.name: j.key for j in plan(load_study(moved / "study.yaml"))} == keys  # same study elsewhere
    (moved / "catalog.yaml").write_text(CATALOG.replace("scale: 256", "scale: 255"))
    changed = {j.name: j.key for j in plan(load_study(moved / "study.yaml"))}
    for name, key in keys.items():
        uses_street = "street" in name
        assert (changed[name] != key) == uses_street, name
    # procedural datasets keep the keys they had before catalogs existed
    plain = (study_dir / "study.yaml").read_text().replace("catalog: catalog.yaml\n", "")
    plain = plain.replace("  - {catalog: street}\n", "").replace("  - {catalog: cube, name: room, tasks: [depth]}\n", "")
    plain += "  - {name: other, domain: aerial, train: 8, val: 4}\n"
    (study_dir / "plain.yaml").write_text(plain)
    with_catalog = plain.replace("datasets:\n", "catalog: catalog.yaml\ndatasets:\n  - {catalog: street}\n")
    (study_dir / "mixed.yaml").write_text(with_catalog)
    before = {j.name: j.key for j in plan(load_study(study_dir / "plain.yaml")) if j.kind in ("pretrain", "baseline")}
    after = {j.name: j.key for j in plan(load_study(study_dir / "mixed.yaml")) if j.kind in ("pretrain", "baseline")}
    assert all(after[name] == key for name, key in before.items())


def test_jobs_open_catalog_datasets_and_refuse_a_changed_entry(study_dir):
    jobs = plan(load_study(study_dir / "study.yaml"))
    job = next(j for j in jobs if j.kind == "baseline" and j.train.dataset == "street")
    storage = Storage(study_dir / "store")
    ds = dataset(job.train, 16, storage)
    assert len(ds) == 4 and ds.info.classes == ("road", "car") and ds.info.domain == "driving"
    s = ds[0]
    assert s["image"].shape == (3, 16, 16) and s["segmentation"].shape == (16, 16) and s["depth"].dtype.is_floating_point
    room = next(j for j in jobs if j.kind == "source" and j.train.dataset == "room")
    assert len(dataset(room.train, 16, storage)) == 40 and dataset(room.train, 16, storage)[0]["depth"].shape == (16, 16)
    (study_dir / "catalog.yaml").write_text(CATALOG.replace("classes: [road, car]", "classes: [road, vehicle]"))
    with pytest.raises(CatalogError, match="datasets.street: changed since the study was planned"):
        dataset(job.train, 16, storage)  # even with the split decoded as planned in the cache


@pytest.mark.parametrize(
    "change, expected",
    [
        (("{catalog: street}", "{catalog: stret}"),
         "datasets[1].catalog: unknown catalog dataset 'stret' in"),
        (("{catalog: street}", "{catalog: street, domain: aerial}"),
         "datasets[1].domain: unknown key 'domain'; expected one of: catalog, name, role, train, val, tasks"),
        (("{catalog: street}", "{catalog: street, tasks: [detection]}"),
         "datasets[1].tasks: 'street' has no 'detection' labels; expected some of its task types: segmentation, depth"),
        (("catalog: catalog.yaml\n", ""), "datasets[1].catalog: names catalog dataset 'street' but the study has no catalog"),
        (("catalog: catalog.yaml", "catalog: nope.yaml"), "nope.yaml: no such catalog file"),
        (("target_sizes: [4]", "target_sizes: [64]"), "datasets[0].train: 8 images, fewer than the largest target size 64"),
    ],
)  # fmt: skip
def test_bad_catalog_references_in_a_study(study_dir, change, expected):
    (study_dir / "study.yaml").write_text(STUDY.replace(*change))
    with pytest.raises(SpecError) as e:
        load_study(study_dir / "study.yaml")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_plan_cli_with_catalog_data_present_and_missing(study_dir, monkeypatch):
    monkeypatch.chdir(study_dir)
    result = CliRunner().invoke(main, ["plan", "study.yaml"])
    assert result.exit_code == 0, result.output
    shutil.rmtree(study_dir / "data" / "street" / "masks" / "val")
    result = CliRunner().invoke(main, ["plan", "study.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == f"  street: {study_dir / 'data/street/masks/val'} (val masks)"


def test_planning_reads_no_file(study_dir, tmp_path_factory, monkeypatch):
    """`plan` is a pure function of the study: the catalog was read, and its splits counted, with the study."""
    study = load_study(study_dir / "study.yaml")
    jobs = plan(study)  # once with the files there: nothing is left to import
    shutil.move(study_dir, tmp_path_factory.mktemp("moved") / "study")  # the study, its catalog and data are gone

    def refuse(*args, **kwargs):
        raise AssertionError(f"plan touched the disk: {args[:1]}")

    for module in (os, io, builtins):
        for name in ("stat", "lstat", "scandir", "listdir", "open"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    try:
        again = plan(study)
    finally:
        monkeypatch.undo()
    assert [(j.name, j.key, j.train.count) for j in again] == [(j.name, j.key, j.train.count) for j in jobs]
    assert {j.eval.count for j in again if j.train.dataset == "street"} == {2}  # as counted on disk when read


def test_a_catalog_study_is_read_and_planned_without_torch(study_dir):
    count, loaded = plan_loads(study_dir / "study.yaml")
    assert count > 0 and loaded == set()
