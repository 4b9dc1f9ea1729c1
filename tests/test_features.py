"""Proxy features (tasks/features.py): what is sampled where, checked against the labels and feature maps directly;
determinism; and that the proxies read signal from them (trained features, real labels) on small procedural data."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, roi_align

from analysis.proxies import PROXIES, domain_similarity, logme
from domains import DatasetInfo, SyntheticDataset
from tasks import get_task
from tasks.base import EmptySplitError
from tasks.data import InMemory
from tasks.features import (BACKGROUND_BOXES, BACKGROUND_IOU, BACKGROUND_RADIUS, Encoder, load_encoder, pooled_features,
                            proxy_features)  # fmt: skip
from tasks.model import MEAN, STD, build_model
from tasks.train import Schedule, train
from tasks.transfer import save_checkpoint

BACKBONE, SIZE = "test_resnet", 48
# task -> (domain, training steps, batch): a few dozen steps on 48 px scenes (Keypoint R-CNN is the slow one)
TRAIN = {"segmentation": ("driving", 30, 8), "depth": ("driving", 30, 8), "detection": ("driving", 30, 4),
         "keypoints": ("close-up", 24, 4)}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: on a shared machine two OpenMP threads spend most of their CPU time spinning for
    each other (this file took 16 s of CPU on one thread, 35 to 150 s on two, on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(domain: str, split: str, n: int, size: int = SIZE) -> InMemory:
    return InMemory.of(SyntheticDataset("t", domain, split, n, size))


@pytest.fixture(scope="module")
def trained():
    """task -> (model trained on the task's training split, an untrained model of the same seed), built lazily."""
    cache = {}

    def get(task: str):
        if task not in cache:
            domain, steps, batch = TRAIN[task]
            data = _data(domain, "train", 32)
            model = build_model(BACKBONE, task, data.info, seed=0)
            train(model, get_task(task), data, Schedule(steps=steps, batch_size=batch, lr=2e-3), seed=0)
            cache[task] = model, build_model(BACKBONE, task, data.info, seed=0)
        return cache[task]

    return get


@pytest.fixture(scope="module")
def scenes():
    """The target splits features are read on: other scenes (val) than the models trained on."""
    return {"driving": _data("driving", "val", 24), "close-up": _data("close-up", "val", 24)}


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("f", "y", "index", "xy", "pooled"))


# -- where the rows come from ------------------------------------------------------------------------------------


def test_segmentation_rows_are_class_balanced_pixel_features_of_the_finest_level(scenes):
    data = scenes["driving"]
    model = build_model(BACKBONE, "segmentation", data.info, seed=0).eval()
    feats = proxy_features(model, data, "segmentation", max_samples=3200, seed=3, batch_size=7)
    n_cls = len(data.info.classes)
    cap = 3200 // n_cls  # 400: above the 373 pixels of class "person" in this split
    assert feats.f.dtype == np.float32 and feats.f.shape == (len(feats.y), 64) and feats.y.dtype == np.int64
    assert not feats.regression and feats.pooled.shape == (len(data), 4 * 64)
    available = np.bincount(torch.stack([s["segmentation"] for s in data.samples]).flatten().numpy(), minlength=256)
    counts = np.bincount(feats.y, minlength=n_cls)
    assert counts.tolist() == np.minimum(available[:n_cls], cap).tolist()
    assert (counts < cap).any() and (counts == cap).any()  # both cases of the cap occur in this split
    # each row: its pixel's label, and the finest FPN level bilinearly upsampled to the image, at that pixel
    col, row = (feats.xy - 0.5).astype(int).T
    labels = torch.stack([data[i]["segmentation"] for i in feats.index])[np.arange(len(col)), row, col]
    assert np.array_equal(labels.numpy(), feats.y)
    with torch.no_grad():
        levels = model.features((torch.stack([s["image"] for s in data.samples]) - MEAN) / STD)
        up = F.interpolate(levels["0"], size=(SIZE, SIZE), mode="bilinear", align_corners=False)  # [N, 64, 48, 48]
    np.testing.assert_allclose(feats.f, up[feats.index, :, row, col].numpy(), rtol=1e-4, atol=1e-5)
    pooled = torch.cat([v.mean(dim=(-2, -1)) for k, v in levels.items() if k != "pool"], 1)  # [N, 4 * 64]
    np.testing.assert_allclose(feats.pooled, pooled.numpy(), rtol=1e-4, atol=1e-5)


def test_depth_rows_are_valid_pixels_against_their_log_depth(scenes):
    left = torch.arange(SIZE) < 20  # only the 20 left columns are valid
    data = InMemory([dict(s, depth=torch.where(left, s["depth"], 0.0)) for s in scenes["driving"].samples],
                    scenes["driving"].info)  # fmt: skip
    model = build_model(BACKBONE, "depth", data.info, seed=0)
    feats = proxy_features(model, data, "depth", max_samples=300, seed=0)
    assert feats.regression and feats.y.dtype == np.float32 and feats.y.shape == (300,) and feats.f.shape == (300, 64)
    col, row = (feats.xy - 0.5).astype(int).T
    assert (col < 20).all()
    depth = torch.stack([data[i]["depth"] for i in feats.index])[np.arange(300), row, col]
    np.testing.assert_allclose(feats.y, np.log(depth.numpy()), rtol=1e-6)
    assert len(set(feats.index.tolist())) > len(data) // 2  # sampled over the split, not from the first images


def test_detection_rows_pool_each_box_from_the_fpn_level_of_its_size():
    """A 128 px image with a box of 120 px (FPN's rule: level floor(4 + log2(120/224)) = 3, stride 8, key "1")
    and one of 16 px (level 0 -> clamped to 2, stride 4, key "0"); RoIAlign on those levels, averaged. Background
    boxes: each object's size, overlapping no object by an IoU of 0.3 or more (none fits beside the 120 px one)."""
    base = SyntheticDataset("t", "driving", "train", 1, 128)
    boxes = torch.tensor([[4.0, 4.0, 124.0, 124.0], [30.0, 40.0, 46.0, 56.0], [10.0, 10.0, 10.0, 20.0]])  # last: empty
    data = InMemory([dict(base[0], boxes=boxes, labels=torch.tensor([0, 1, 1]))] * 2, base.info)
    model = build_model(BACKBONE, "detection", base.info, seed=0).eval()
    feats = proxy_features(model, data, "detection", max_samples=100, seed=0)
    objects = feats.y > 0
    assert feats.f.shape[1] == 64 and (feats.y[objects] - 1).tolist() == [0, 0, 1, 1]
    assert 1 <= (~objects).sum() <= 2 * 2 * BACKGROUND_BOXES  # two images, two per 16 px object at most
    assert feats.targets().keys() == {"class", "box"} and len(feats.targets()["box"][1]) == 4  # the objects' boxes
    with torch.no_grad():
        levels = model.features((data[0]["image"][None] - MEAN) / STD)
    pixels = feats.box * 128
    assert (box_iou(torch.from_numpy(pixels[~objects]), boxes[:2]).max(dim=1).values < BACKGROUND_IOU).all()
    np.testing.assert_allclose(pixels[~objects, 2:] - pixels[~objects, :2], 16.0, rtol=1e-5)  # the small one's size
    for i in range(len(feats.y)):
        big = pixels[i, 2] - pixels[i, 0] > 100
        level, stride = ("1", 8) if big else ("0", 4)
        want = roi_align(levels[level], [torch.from_numpy(pixels[i : i + 1])], 7, spatial_scale=1 / stride,
                         sampling_ratio=2).mean(dim=(-2, -1))[0]  # fmt: skip
        np.testing.assert_allclose(feats.f[i], want.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(feats.xy[i], (pixels[i, :2] + pixels[i, 2:]) / 2, rtol=1e-5)  # the centre
    for i in np.flatnonzero(objects):
        np.testing.assert_allclose(pixels[i], boxes[feats.y[i] - 1].numpy(), rtol=1e-5)


def test_a_detection_target_with_one_object_class_scores_its_objects_against_the_background():
    """Underwater scenes have one thing class (fish): objects against background boxes are still two classes, so
    every proxy is defined (it raised 'y: expected at least 2 classes' before background boxes)."""
    data = _data("underwater", "val", 16)
    assert len(data.info.things) == 1
    model = build_model(BACKBONE, "detection", data.info, seed=0)
    feats = proxy_features(model, data, "detection", max_samples=256, seed=0)
    assert set(np.unique(feats.y)) == {0, 1} and min(np.bincount(feats.y)) > 10
    for name, (f, y, regression) in feats.targets().items():
        assert all(np.isfinite(fn(f, y, regression=regression)) for fn in PROXIES.values()), name


def test_keypoint_rows_sit_on_labelled_keypoints_and_background_rows_away_from_all_of_them(scenes):
    data = scenes["close-up"]
    model = build_model(BACKBONE, "keypoints", data.info, seed=0)
    feats = proxy_features(model, data, "keypoints", max_samples=700, seed=1)
    k = len(data.info.keypoints.names)
    counts = np.bincount(feats.y, minlength=k + 1)
    assert counts[0] == 700 // (k + 1) and (counts[1:] > 0).all() and feats.y.max() == k
    category = data.info.things.index(data.info.keypoints.category)
    radius = BACKGROUND_RADIUS * 4  # strides of the finest level
    for i, y, xy in zip(feats.index, feats.y, feats.xy, strict=True):
        s = data[i]
        kps = s["keypoints"][s["labels"] == category]  # [N, K, 3]
        labelled = kps[..., :2][kps[..., 2] > 0]  # [L, 2]
        if y == 0:
            assert ((labelled - torch.from_numpy(xy)).norm(dim=1) > radius).all()
        else:
            at = kps[:, y - 1]  # this keypoint in every object of the image
            assert ((at[:, :2] == torch.from_numpy(xy)).all(1) & (at[:, 2] > 0)).any()


# -- determinism and errors --------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_rows_whatever_the_batch_size_and_another_seed_other_rows(scenes):
    data = scenes["driving"]
    model = build_model(BACKBONE, "segmentation", data.info, seed=0)
    before = torch.get_rng_state()
    a = proxy_features(model, data, "segmentation", max_samples=200, seed=0, batch_size=8)
    b = proxy_features(model, data, "segmentation", max_samples=200, seed=0, batch_size=8)
    c = proxy_features(model, data, "segmentation", max_samples=200, seed=0, batch_size=5)
    d = proxy_features(model, data, "segmentation", max_samples=200, seed=1, batch_size=8)
    assert torch.equal(torch.get_rng_state(), before) and model.training  # no global draw; train mode restored
    assert _same(a, b)
    assert np.array_equal(a.index, c.index) and np.array_equal(a.xy, c.xy) and np.array_equal(a.y, c.y)
    np.testing.assert_allclose(a.f, c.f, rtol=1e-4, atol=1e-5)  # other batches: the same rows, up to rounding
    assert np.array_equal(np.bincount(a.y), np.bincount(d.y))  # the same balance of other pixels
    rows = lambda x: {(i, *p) for i, p in zip(x.index.tolist(), x.xy.tolist(), strict=True)}  # noqa: E731
    assert len(rows(a) & rows(d)) < len(a.y) // 2
    boxes = [proxy_features(model, data, "detection", max_samples=20, seed=s) for s in (0, 0, 1)]
    assert _same(boxes[0], boxes[1]) and not np.array_equal(boxes[0].index, boxes[2].index)


def test_splits_with_nothing_to_sample_and_unknown_task_types_are_clear_errors(scenes):
    info = scenes["driving"].info
    samples = scenes["driving"].samples[:3]
    model = build_model(BACKBONE, "depth", info, seed=0)
    ignored = InMemory([dict(s, segmentation=torch.full_like(s["segmentation"], 255)) for s in samples], info)
    with pytest.raises(EmptySplitError, match="'t': 0 labelled pixels .* in 3 images"):
        proxy_features(model, ignored, "segmentation")
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    no_boxes = InMemory([dict(s, **none) for s in samples], info)
    with pytest.raises(EmptySplitError, match="0 boxes"):
        proxy_features(model, no_boxes, "detection")
    with pytest.raises(ValueError, match="unknown task type 'pose'; expected one of: segmentation, depth"):
        proxy_features(model, samples, "pose")
    no_schema = DatasetInfo("flat", "aerial", ("segmentation",), info.classes, SIZE, things=info.things)
    with pytest.raises(ValueError, match="'flat' has no keypoint schema"):
        proxy_features(model, InMemory(samples, no_schema), "keypoints")


# -- the proxies read signal from these features -----------------------------------------------------------------


@pytest.mark.parametrize("task", ["segmentation", "depth"])
def test_dense_features_of_a_trained_backbone_beat_a_random_one_and_shuffled_labels(task, trained, scenes):
    model, untrained = trained(task)
    data = scenes["driving"]
    real = proxy_features(model, data, task, max_samples=1024, seed=0)
    rand = proxy_features(untrained, data, task, max_samples=1024, seed=0)
    assert np.array_equal(real.xy, rand.xy)  # the same pixels: only the features differ
    shuffled = np.random.default_rng(0).permutation(real.y)
    score = logme(real.f, real.y, regression=real.regression)
    assert score > logme(rand.f, rand.y, regression=rand.regression) + 0.05
    assert score > logme(real.f, shuffled, regression=real.regression) + 0.05


@pytest.mark.parametrize("task", ["detection", "keypoints"])
def test_instance_features_of_a_trained_backbone_score_their_labels_above_shuffled_ones(task, trained, scenes):
    """A few dozen detector steps barely move the backbone (trained vs random is a coin flip here), so the
    property checked is that the sampled features carry their labels: real labels beat shuffled ones, by more
    than 3 standard deviations of LogME over shuffles (about 0.003 for keypoints, 0.007 for boxes' classes)."""
    model, _ = trained(task)
    data = _data("driving", "val", 48) if task == "detection" else scenes["close-up"]
    feats = proxy_features(model, data, task, max_samples=1024, seed=0)
    rng = np.random.default_rng(0)
    for name, (f, y, regression) in feats.targets().items():
        shuffled = y[rng.permutation(len(y))]
        assert logme(f, y, regression=regression) > logme(f, shuffled, regression=regression) + 0.01, name


def test_a_depth_source_scores_a_segmentation_target_through_its_checkpoint(trained, scenes, tmp_path):
    """Cross-task: the depth model's backbone + neck (never its head) read on a segmentation target, loaded from
    its checkpoint exactly as the model itself reads; every proxy finite; domain similarity of two splits."""
    model, _ = trained("depth")
    path = save_checkpoint(model, tmp_path / "depth.pt", {"backbone": BACKBONE, "task": "depth"})
    before = torch.get_rng_state()
    encoder = load_encoder(path)
    assert torch.equal(torch.get_rng_state(), before) and isinstance(encoder, Encoder)
    assert {k.split(".")[0] for k in encoder.state_dict()} == {"backbone", "neck"}
    target = scenes["driving"]
    feats = proxy_features(encoder, target, "segmentation", max_samples=512, seed=0)
    assert _same(feats, proxy_features(model, target, "segmentation", max_samples=512, seed=0))
    scores = {name: fn(feats.f, feats.y, regression=False) for name, fn in PROXIES.items()}
    assert all(np.isfinite(v) for v in scores.values()), scores
    assert scores["logme"] > logme(feats.f, np.random.default_rng(0).permutation(feats.y)) + 0.05
    source = pooled_features(encoder, _data("driving", "train", 32), max_images=24)
    assert source.shape == feats.pooled.shape
    far = pooled_features(encoder, _data("underwater", "train", 24))
    near_score, far_score = domain_similarity(source, feats.pooled), domain_similarity(far, feats.pooled)
    assert np.isfinite(near_score) and near_score > far_score  # driving train is nearer driving val than reefs are
    other = Encoder(encoder.backbone, None)  # without a neck: the backbone's maps of stride >= 4
    bare = proxy_features(other, target, "segmentation", max_samples=512, seed=0)
    assert bare.f.shape == (len(bare.y), 32) and np.array_equal(bare.xy, feats.xy)
    with pytest.raises(ValueError, match="equal channels"):
        proxy_features(other, target, "detection")
    bad = io.BytesIO()
    torch.save({"state_dict": {"backbone.x": torch.zeros(1)}, "meta": {}}, bad)
    bad.seek(0)
    with pytest.raises(ValueError, match="names no backbone"):
        load_encoder(bad)
    state = model.state_dict()
    first = next(k for k in state if k.startswith("backbone."))
    broken = dict(state, **{first: torch.zeros(1)})  # one backbone tensor of another shape
    torch.save({"state_dict": broken, "meta": {"backbone": BACKBONE}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a 'test_resnet' backbone \\+ neck: 1 tensors missing or misshapen"):
        load_encoder(tmp_path / "x.pt")
