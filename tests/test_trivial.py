"""Trivial predictors (tasks/reference.py): exact on data made for them, and beaten by every task's baseline.

The learning tests run the demo's own regime (configs/demo.yaml: its image
size, generic pretraining, finetuning schedule and target size) on procedural
domains, and check that the baseline beats what a trivial predictor fitted on
the same training subset scores on the same validation split.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch

from domains import DatasetInfo, KeypointSchema, SyntheticDataset
from domains.base import nested_subset
from matrix.spec import load_study
from tasks.data import InMemory, Subset
from tasks.recipe import Recipe, run_recipe
from tasks.reference import PixelMedian, fit_and_score, median_log_depth
from tasks.train import Schedule
from tasks.transfer import save_checkpoint

DEMO = load_study(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
INFO = DatasetInfo("hand", "driving", ("segmentation", "depth", "detection", "keypoints"), ("a", "b", "c"), 8,
                   things=("a", "b"), keypoints=KeypointSchema("b", ("head", "tail"), sigmas=(0.05, 0.05)))  # fmt: skip


def _sample(seg: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
    box = torch.tensor([[1.0, 2.0, 5.0, 6.0], [2.0, 1.0, 7.0, 7.0]])
    kps = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[3.0, 2.0, 2.0], [6.0, 6.0, 2.0]]])
    return {"image": torch.rand(3, 8, 8), "segmentation": seg, "depth": depth, "boxes": box,
            "labels": torch.tensor([0, 1]), "keypoints": kps}  # fmt: skip


def _hand_data(n: int = 5) -> InMemory:
    """Pixel (0, 0) is class 1 in 3 of 5 maps, class 2 elsewhere; depth 1..n at every pixel; fixed objects."""
    samples = []
    for i in range(n):
        seg = torch.full((8, 8), 2, dtype=torch.int64)
        seg[0, 0] = 1 if i < 3 else 0
        seg[7, 7] = 255  # ignored: the majority there is the overall one
        samples.append(_sample(seg, torch.full((8, 8), float(i + 1))))
    return InMemory(samples, INFO)


def test_segmentation_reference_is_each_pixels_majority_class():
    data = _hand_data()
    out = fit_and_score("segmentation", data, data)
    # predicted: class 1 at (0, 0), class 2 elsewhere; truth has class 0 at (0, 0) in 2 maps
    tp = torch.tensor([0.0, 3.0, 62 * 5.0])
    union = torch.tensor([2.0, 5.0, 62 * 5.0])
    assert out.metrics["miou"] == pytest.approx(float((tp / union).mean()))
    assert out.primary_metric == "miou" and out.higher_is_better


def test_depth_reference_is_each_pixels_median_depth():
    data = _hand_data()
    out = fit_and_score("depth", data, data)
    gt = torch.arange(1.0, 6.0)  # the median depth is 3 m at every pixel
    assert out.metrics["abs_rel"] == pytest.approx(float(((3 - gt).abs() / gt).mean()), rel=1e-6)
    assert median_log_depth(data) == pytest.approx(float(torch.tensor(3.0).log()), rel=1e-6)
    part = InMemory([dict(s, depth=torch.where(torch.arange(8)[None] < 4, s["depth"], 0.0)) for s in data.samples])
    part.info = INFO
    logd = PixelMedian().fit(part, INFO, 0).log_depth  # never-valid columns take the overall median
    assert torch.allclose(logd, torch.full((8, 8), torch.tensor(3.0).log().item()))


@pytest.mark.parametrize("task", ["detection", "keypoints"])
def test_box_and_pose_priors_score_perfectly_when_every_object_sits_at_its_mean(task):
    data = _hand_data()
    assert fit_and_score(task, data, data).metrics["ap"] == pytest.approx(1.0)
    moved = InMemory([dict(s, boxes=s["boxes"] + 1.0, keypoints=s["keypoints"] + torch.tensor([1.0, 1.0, 0.0]))
                      for s in data.samples], INFO)  # fmt: skip
    assert fit_and_score(task, data, moved).metrics["ap"] < 1.0


def test_empty_training_data_is_an_error_naming_the_dataset():
    with pytest.raises(ValueError, match="'hand': no training samples"):
        fit_and_score("segmentation", InMemory([], INFO), _hand_data())


# -- every task type learns in the demo's regime -------------------------------------------------

# (name, domain, seed, train split) per task type: the demo's datasets where the task is theirs, and for
# keypoints the domains whose objects are large enough at the demo's 64 px for OKS to mean anything
DOMAINS = {
    "segmentation": [("city", "driving", 0, 320), ("reef", "underwater", 0, 320), ("fields", "aerial", 0, 48)],
    "depth": [("city", "driving", 0, 320), ("reef", "underwater", 0, 320), ("fields", "aerial", 0, 48)],
    "detection": [("city", "driving", 0, 320), ("home", "indoor", 0, 96), ("bugs", "close-up", 0, 96)],
    "keypoints": [("home", "indoor", 0, 96), ("shop", "consumer", 0, 96), ("bugs", "close-up", 0, 96)],
}


@pytest.fixture(scope="module")
def generic_init(tmp_path_factory) -> Path:
    """The demo's generic init: its pretraining schedule on its mixture of every domain. Trained once per test
    session: pytest-xdist's workers share the folder above their own temporary ones, and the first to take the
    lock trains while the others wait, then read its checkpoint (the training is deterministic)."""
    pt, size = DEMO.pretrain, DEMO.image_size
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's, above each worker's
    path = shared / "demo-generic-init.pt"
    with open(shared / "demo-generic-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            train = SyntheticDataset("demo-pretrain", "mixed", "train", pt.train, size, pt.seed, pt.domains)
            val = SyntheticDataset("demo-pretrain", "mixed", "val", 32, size, pt.seed, pt.domains)
            recipe = Recipe(pt.task, DEMO.backbone, Schedule(**pt.schedule.model_dump()), pt.seed, size)
            tmp = path.with_suffix(".tmp")
            run_recipe(recipe, InMemory.of(train), InMemory.of(val),
                       save=lambda model, meta: save_checkpoint(model, tmp, meta))  # fmt: skip
            tmp.rename(path)
    return path


@pytest.mark.parametrize("task", list(DOMAINS))
def test_every_task_type_beats_its_trivial_predictor_in_the_demos_regime(task, generic_init):
    size, n = DEMO.image_size, min(DEMO.target_sizes)
    schedule = Schedule(**DEMO.finetune_for(task))
    scores = {}
    for name, domain, seed, pool in DOMAINS[task]:
        split = SyntheticDataset(name, domain, "train", pool, size, seed)
        train = InMemory.of(Subset(split, nested_subset(pool, n, DEMO.subset_seed)))
        train.info = split.info
        val = InMemory.of(SyntheticDataset(name, domain, "val", 64, size, seed))
        reference = fit_and_score(task, train, val)
        with open(generic_init, "rb") as weights:
            baseline = run_recipe(Recipe(task, DEMO.backbone, schedule, 0, size), train, val, upstream=weights)
        key = baseline.primary_metric
        scores[name] = (baseline.metrics[key], reference.metrics[key])
    sign = 1 if baseline.higher_is_better else -1
    beaten = [name for name, (b, r) in scores.items() if sign * (b - r) > 0]
    assert len(beaten) >= 3, f"{task}: baseline vs trivial predictor per target: {scores}"


def test_an_empty_depth_split_is_an_error_naming_the_dataset_and_split():
    from tasks.base import EmptySplitError
    from tasks.depth import DepthErrors

    with pytest.raises(EmptySplitError, match="no pixel with valid depth"):
        DepthErrors().compute()  # it used to score AbsRel 0.0, the best value there is
    data = _hand_data()
    invalid = InMemory([dict(s, depth=torch.zeros(8, 8)) for s in data.samples], INFO)
    with pytest.raises(EmptySplitError, match="no pixel with valid depth"):
        fit_and_score("depth", data, invalid)

    from matrix.execute import _naming_the_split
    from matrix.plan import plan
    from matrix.spec import parse_study

    study = parse_study({"name": "s", "tasks": ["depth"], "datasets": [{"name": "a", "domain": "aerial"},
                                                                     {"name": "b", "domain": "indoor"}]}, "s.yaml")  # fmt: skip
    job = next(j for j in plan(study) if j.kind == "reference")
    with pytest.raises(EmptySplitError, match=r"^a \(val split, depth\): no pixel with valid depth"):
        with _naming_the_split(job):
            DepthErrors().compute()
