"""Multi-source sources: the mixture a multi-source trains on (domains/mixture.py), and a study that runs one."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_tmx

from domains import IGNORE, DatasetInfo, SyntheticDataset
from domains.mixture import Mixture, allocate, union
from tasks.data import InMemory, StepBatches, train_loader


def _parts(*specs, n=12, split="train"):
    return [(name, SyntheticDataset(name, domain, split, n, 32, seed)) for name, domain, seed in specs]


CITY, TOWN, REEF = ("city", "driving", 0), ("town", "driving", 1), ("reef", "underwater", 0)


def _names(segmentation: torch.Tensor, classes: tuple[str, ...]) -> np.ndarray:
    """[H, W] class names of a label map ('?' where ignored)."""
    ids = np.where(segmentation == IGNORE, len(classes), segmentation)
    return np.array([*classes, "?"])[ids]


def test_labels_are_remapped_into_the_union_label_space():
    parts = _parts(CITY, REEF)
    mix = Mixture("mix", parts, [1, 1])
    city, reef = (d.info for _, d in parts)
    assert mix.info.classes == tuple(c for c in mix.info.classes if c in city.classes + reef.classes)
    assert set(mix.info.classes) == set(city.classes) | set(reef.classes)
    assert mix.info.things == ("vehicle", "person", "fish")  # VOCAB order
    assert mix.info.domain == "mixed" and mix.info.tasks == ("segmentation", "depth", "detection")
    assert mix.info.keypoints is None  # a vehicle's keypoints and a fish's are not one schema
    seen = Counter()
    for i in range(len(mix)):
        p, j = mix.table[i]
        own, got = parts[p][1][j], mix[i]
        info = parts[p][1].info
        assert set(got) == {"image", "segmentation", "depth", "boxes", "labels"}  # no keypoints
        for key in ("image", "depth", "boxes"):
            assert torch.equal(got[key], own[key]), key
        # every pixel names the same class (or is ignored) in both label spaces
        names, merged = _names(own["segmentation"], info.classes), _names(got["segmentation"], mix.info.classes)
        assert (names == merged).all() and torch.equal(got["segmentation"] == IGNORE, own["segmentation"] == IGNORE)
        assert [mix.info.things[t] for t in got["labels"]] == [info.things[t] for t in own["labels"]]
        seen[parts[p][0]] += 1
    assert seen == {"city": 12, "reef": 12}
    assert mix.ids[0].split("/", 1)[0] in ("city", "reef") and len(set(mix.ids)) == 24  # each sample once


def test_union_puts_vocabulary_names_first_then_others_as_first_seen():
    assert union([("background", "road", "zebra"), ("sky", "zebra", "lamp")]) == ("sky", "road", "background",
                                                                                   "zebra", "lamp")  # fmt: skip
    info = DatasetInfo("x", "driving", ("segmentation",), ("background", "road"), 32)
    sample = {"image": torch.zeros(3, 4, 4), "segmentation": torch.tensor([[0, 1, 255, 1]] * 4)}
    mix = Mixture("m", [("x", InMemory([sample], info)), *_parts(REEF, n=2)], [1, 1])
    x = next(i for i in range(len(mix)) if mix.table[i][0] == 0)
    got = mix[x]["segmentation"][0].tolist()
    assert [mix.info.classes[v] if v != 255 else None for v in got] == ["background", "road", None, "road"]


def test_keypoints_only_when_every_part_has_the_same_schema():
    same = Mixture("drive", _parts(CITY, TOWN), [1, 1])
    assert "keypoints" in same.info.tasks and same.info.keypoints.category == "vehicle"
    assert same.info.domain == "driving"
    same.check_task("keypoints")
    part, index = same.table[0]
    assert torch.equal(same[0]["keypoints"], same.parts[part][index]["keypoints"])  # one schema: unchanged
    other = Mixture("drive-sea", _parts(CITY, REEF), [1, 1])
    with pytest.raises(ValueError, match=r"mixture 'drive-sea' \(city, reef\): no keypoints labels: its parts have "
                                         r"different keypoint schemas \(city: vehicle, reef: fish\)"):  # fmt: skip
        other.check_task("keypoints")
    other.check_task("segmentation")


def test_the_table_draws_each_part_with_its_weight():
    sizes, weights = (50, 200, 10), (1.0, 2.0, 1.0)
    table = allocate(sizes, weights, 100_000, seed=3)
    share = np.bincount(table[:, 0]) / len(table)
    assert np.abs(share - np.array(weights) / 4).max() <= 1 / len(table)
    for p, size in enumerate(sizes):  # spread evenly: every sample of a part drawn k or k + 1 times
        counts = np.bincount(table[table[:, 0] == p, 1], minlength=size)
        assert counts.max() - counts.min() <= 1
    assert not np.array_equal(table, allocate(sizes, weights, 100_000, seed=4))
    # what training draws: uniform batches over a table of the parts' total size (tasks.data.StepBatches)
    small = allocate(sizes, weights, sum(sizes), seed=0)
    drawn = [i for batch in StepBatches(len(small), 32, 500, seed=0) for i, _ in batch]
    share = np.bincount(small[drawn, 0], minlength=3) / len(drawn)
    assert np.abs(share - np.array(weights) / 4).max() < 0.01
    # weights proportional to the sizes: every sample once (how the val splits are joined)
    whole = allocate(sizes, np.array(sizes) / sum(sizes), sum(sizes), seed=9)
    assert sorted(map(tuple, whole.tolist())) == [(p, i) for p, n in enumerate(sizes) for i in range(n)]
    for bad in ((1.0, 0.0, 1.0), (1.0, float("inf"), 1.0), (1.0, 1.0)):
        with pytest.raises(ValueError, match="expected one finite weight > 0 per part"):
            allocate(sizes, bad, 10)


def test_the_table_is_the_same_in_a_fresh_process_and_after_pickling():
    mix = Mixture("mix", _parts(CITY, REEF, n=40), [3, 1], length=64, seed=5)
    assert mix.fractions == {"city": 0.75, "reef": 0.25}
    again = pickle.loads(pickle.dumps(mix))
    assert np.array_equal(again.table, mix.table) and again.info == mix.info
    assert all(torch.equal(again[7][k], mix[7][k]) for k in mix[7])
    code = ("import hashlib; from domains.mixture import allocate; "
            "print(hashlib.sha256(allocate((40, 40), (3, 1), 64, 5).tobytes()).hexdigest())")  # fmt: skip
    fresh = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == hashlib.sha256(mix.table.tobytes()).hexdigest()
    # DataLoader workers get the mixture pickled: the same batches as reading in this process
    batches = [list(train_loader(mix, 8, 3, seed=0, workers=w)) for w in (0, 2)]
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["segmentation"], b["segmentation"])


STUDY = """\
name: ms
image_size: 32
init: scratch
tasks: [segmentation]
datasets:
  - {name: a, domain: driving, train: 24, val: 8}
  - {name: b, domain: underwater, train: 24, val: 8, role: source}
  - {name: c, domain: driving, train: 24, val: 8, seed: 1, role: target}
multi_sources:
  - {name: ab, datasets: {a: 3, b: 1}}
target_sizes: [16]
source: {steps: 4, batch_size: 8}
finetune: {steps: 30, batch_size: 8, lr: 3.0e-3}   # enough for baselines to beat the trivial predictor
"""


def test_a_multi_source_study_runs_on_ray_and_its_factor_is_testable(tmp_path):
    from analysis.load import load_runs
    from analysis.report import analyse
    from matrix.plan import count_by_kind, plan
    from matrix.spec import load_study

    (tmp_path / "ms.yaml").write_text(STUDY)
    (tmp_path / "home").mkdir()
    jobs = plan(load_study(tmp_path / "ms.yaml"))
    # sources a, b, ab; targets a and c; onto a only b (ab has seen a's labels), onto c all three
    assert count_by_kind(jobs) == {"source": 3, "transfer": 4, "baseline": 2, "reference": 2}
    result = run_tmx("run", "ms.yaml", "--max-parallel", "2", cwd=tmp_path, env={"HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 failed, 0 skipped" in result.stdout

    uri = f"sqlite:///{tmp_path / 'outputs' / 'ms' / 'mlflow.db'}"
    runs = load_runs(uri, "ms")
    assert (runs["status"] == "FINISHED").all() and set(runs["job_key"]) == {j.key for j in jobs}
    multi = runs[runs["multi_source"] == "true"]
    assert set(multi["kind"]) == {"source", "transfer"} and (multi["source_dataset"] == "ab").all()
    assert (multi["source_domains"] == "driving,underwater").all() and (multi["source_domain"] == "mixed").all()
    assert (multi["source_size"] == "48").all()

    # the multi-source trained on 3/4 a and 1/4 b: its logged training ids say so
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    source = next(j for j in jobs if j.kind == "source" and j.source.dataset == "ab")
    run = client.search_runs([client.get_experiment_by_name("ms").experiment_id], f"tags.job_key = '{source.key}'")[0]
    assert run.data.tags["source_datasets"] == "a,b" and run.data.tags["mlflow.runName"] == source.name
    path = client.download_artifacts(run.info.run_id, "train_ids.json", str(tmp_path))
    ids = json.loads(Path(path).read_text())["ids"]
    assert Counter(i.split("/", 1)[0] for i in ids) == {"a": 36, "b": 12}

    analysis = analyse(runs, n_boot=200)
    factor = analysis.factors.set_index("factor").loc["multi_source"]
    assert factor["testable"] and factor["n_yes"] > 0 and factor["n_no"] > 0, analysis.factors
    gain = analysis.gains.set_index("source").loc["ab/segmentation"]
    assert gain["target"] == "c/segmentation" and bool(gain["includes_target_domain"]) and not gain["same_domain"]
