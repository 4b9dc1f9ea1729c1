import os

import pytest
from conftest import REPO, plan_loads, run_tmx
from click.testing import CliRunner
from pydantic import ValidationError

from matrix.cli import main

from matrix.spec import SpecError, load_study

GOOD = """\
name: s
datasets:
  - {name: a, domain: driving}
  - {name: b, domain: aerial}
"""


def test_demo_study_loads_and_is_frozen():
    study = load_study(REPO / "configs" / "demo.yaml")
    assert study.name == "demo" and len(study.datasets) == 5
    with pytest.raises(ValidationError):
        study.name = "other"


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace("aerial", "forest"),
         "datasets[1].domain: unknown domain 'forest'; expected one of: aerial, close-up, consumer, driving, indoor"),
        (GOOD + "tasks: [segmentation, keypoint]\n",
         "tasks[1]: unknown task 'keypoint'; expected one of: depth, detection, keypoints, segmentation"),
        (GOOD.replace("domain: driving", "domian: driving"),
         "datasets[0].domian: unknown key 'domian'; expected one of: name, domain, role, blend, train, val, seed, tasks"),
        (GOOD + "seedz: [1]\n", "seedz: unknown key 'seedz'; expected one of: name, output_dir, backbone"),
        (GOOD + "finetune: {steps: 10, lrr: 0.1}\n", "finetune.lrr: unknown key 'lrr'; expected one of: steps, batch_size, lr"),
        (GOOD + "init: foo\n", "init: got 'foo'; input should be 'generic', 'imagenet' or 'scratch'"),
        (GOOD + "target_sizes: [many]\n", "target_sizes[0]: Input should be a valid integer"),
        (GOOD + "target_sizes: [500]\n", "datasets[0].train: 400 images, fewer than the largest target size 500"),
        (GOOD + "backbone: resnt18\n", "backbone: unknown backbone 'resnt18': not a timm model name; close ones: resnet18"),
        (GOOD + "resources: {transfer: {loader_workers: -1}}\n",
         "resources.transfer.loader_workers: Input should be greater than or equal to 0 (got -1)"),
        (GOOD + "resources: {transfer: {cpus: 2}}\n",
         "resources.transfer.cpus: unknown key 'cpus'; expected one of: num_cpus, num_gpus, loader_workers"),
        (GOOD + "subset_seed: first\n", "subset_seed: Input should be a valid integer"),
        (GOOD + "multi_sources: [{name: m, datasets: {a: 1, cty: 1}}]\n",
         "multi_sources[0].datasets: unknown dataset 'cty'; expected some of the study's datasets: a, b"),
        (GOOD + "multi_sources: [{name: m, datasets: {a: 1, b: 0}}]\n",
         "multi_sources[0].datasets.b: Input should be greater than 0 (got 0)"),
        (GOOD + "multi_sources: [{name: m, datasets: [a]}]\n",
         "multi_sources[0].datasets: 1 dataset; expected at least two to mix"),
        (GOOD + "multi_sources: [{name: a, datasets: [a, b]}]\n",
         "multi_sources[0].name: 'a' is a dataset's name; expected a name of its own"),
        (GOOD + "multi_sources: [{name: m, datasets: [a, b], tasks: [detection]}]\n",
         "multi_sources[0].tasks: dataset 'a' is not used for 'detection' (a: segmentation depth, b: segmentation "
         "depth); expected task types all its datasets are used for"),
        (GOOD.replace("driving}", "driving, tasks: [segmentation]}").replace("aerial}", "aerial, tasks: [depth]}")
         + "multi_sources: [{name: m, datasets: [a, b]}]\n",
         "multi_sources[0]: its datasets share none of the study's task types (a: segmentation, b: depth)"),
        (GOOD + "multi_sources: [{name: m, datasets: [a, b], tasks: [keypoints]}]\ntasks: [keypoints]\n",
         "multi_sources[0].tasks: 'keypoints' needs one keypoint schema shared by all its datasets, and theirs differ "
         "(a: vehicle with 6 keypoints, b: vehicle with 4 keypoints)"),
        (GOOD + "multi_sources: [{name: m, weights: {a: 1, b: 1}}]\n",
         "multi_sources[0].weights: unknown key 'weights'; expected one of: name, datasets, tasks"),
        ("name: [s\n", "line 2: invalid YAML"),
        ("- just a list\n", "expected a mapping of study fields"),
    ],
)  # fmt: skip
def test_bad_study_exits_2_with_one_line(write_study, tmp_path, monkeypatch, text, expected):
    path = write_study(text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tmx: {path}: ")
    assert expected in lines[0]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("bad", ["domain: forest", "domian: driving", "domain: driving, tasks: [keypoint]"])
def test_bad_study_from_the_shell_starts_neither_ray_nor_mlflow(write_study, tmp_path, bad):
    path = write_study(GOOD.replace("domain: driving", bad))
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    result = run_tmx("run", str(path), cwd=tmp_path, env={"RAY_TMPDIR": str(ray_tmp)})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(f"tmx: {path}: datasets[0]")
    assert "expected one of:" in result.stderr
    # neither Ray nor MLflow started: no session, no store, no output folder
    assert not os.listdir(ray_tmp)
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("mlflow.db"))


def test_missing_file_and_errors_from_python(tmp_path):
    with pytest.raises(SpecError, match="nope.yaml: no such study file"):
        load_study(tmp_path / "nope.yaml")
    result = run_tmx("plan", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "tmx: nope.yaml: no such study file"


def test_imagenet_init_without_weights_is_refused_up_front(write_study, tmp_path, monkeypatch):
    path = write_study(GOOD + "init: imagenet\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert "init: 'imagenet': ImageNet weights for 'test_resnet' are not in the local cache" in result.stderr
    assert "hub/checkpoints/test_resnet.safetensors" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


def test_multi_sources_load():
    from matrix.spec import parse_study

    study = parse_study({"name": "s", "tasks": ["segmentation", "keypoints"],
                         "datasets": [{"name": "a", "domain": "driving", "role": "target"},
                                      {"name": "b", "domain": "aerial"}, {"name": "c", "domain": "driving"}],
                         "multi_sources": [{"name": "ab", "datasets": {"a": 3, "b": 1}},
                                           {"name": "ac", "datasets": ["a", "c"]}]}, "s.yaml")  # fmt: skip
    ab, ac = study.multi_sources
    assert ab.weights() == {"a": 0.75, "b": 0.25} and ac.weights() == {"a": 0.5, "c": 0.5}  # a list: equal weights
    # a dataset of role target may be a part; keypoints by default only where the parts share one schema
    assert study.multi_source_tasks(ab) == ("segmentation",)
    assert study.multi_source_tasks(ac) == ("segmentation", "keypoints")


def test_reading_and_planning_a_study_imports_no_torch():
    count, loaded = plan_loads(REPO / "configs" / "factors.yaml")
    assert count == 557 and loaded == set()


def test_the_shared_loader_names_the_file_and_the_field_for_any_model(tmp_path):
    from typing import Annotated, Literal

    from pydantic import Discriminator, Tag

    from domains.config import ConfigError, Strict, load_model

    class Leaf(Strict):
        size: int = 1

    class Other(Strict):
        kind: Literal["other"]

    class Root(Strict):
        leaves: dict[str, Leaf] = {}
        items: tuple[Annotated[Annotated[Leaf, Tag("leaf")] | Annotated[Other, Tag("other")],
                               Discriminator(lambda v: "other" if "kind" in v else "leaf")], ...] = ()  # fmt: skip

    path = tmp_path / "c.yaml"
    for text, expected in [
        ("leaves: {a: {sise: 2}}\n", "leaves.a.sise: unknown key 'sise'; expected one of: size"),
        ("leaves: {a: {size: big}}\n", "leaves.a.size: Input should be a valid integer, unable to parse string as an "
                                        "integer (got 'big')"),
        ("items: [{size: 1}, {kind: other, size: 2}]\n", "items[1].size: unknown key 'size'; expected one of: kind"),
        ("items: [{kind: mine}]\n", "items[0].kind: got 'mine'; input should be 'other'"),
        ("leaves: [\n", "line 2: invalid YAML"),
        ("[1, 2]\n", "expected a mapping of thing fields at the top level, got list"),
    ]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_model(path, Root, what="thing")
        assert str(e.value).startswith(f"{path}: {expected}") and "\n" not in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match=r"none\.yaml: no such thing file$"):
        load_model(tmp_path / "none.yaml", Root, what="thing")
