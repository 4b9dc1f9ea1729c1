"""Streaming input: the decoded-sample cache, loaders that give the same batches for any worker count, subsets."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from functools import partial

import numpy as np
import pytest
import torch

from conftest import REPO

from domains import SyntheticDataset
from domains.base import nested_subset
from domains.cache import MANIFEST, TMP_SUFFIX, CachedDataset, SampleCache
from domains.transforms import augment
from matrix.plan import plan
from matrix.spec import parse_study
from tasks import get_task
from tasks.data import Subset
from tasks.model import build_model
from tasks.train import Schedule, evaluate, train


def _synthetic(n=24, size=32, split="train"):
    return SyntheticDataset("c", "close-up", split, n, size)


def test_cache_gives_back_what_the_reader_decoded(tmp_path):
    direct = _synthetic()
    cached = SampleCache(tmp_path).get("k1", _synthetic)
    assert len(cached) == len(direct) and cached.info == direct.info and cached.ids == direct.ids
    for i in (0, 7, 23):
        want, got = direct[i], cached[i]
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            if key == "image":  # stored as 8 bits: at most half a grey level off
                assert (got[key] - value).abs().max() <= 0.5 / 255 + 1e-6
            else:
                assert torch.equal(got[key], value), key


def test_shards_are_plain_webdataset_tars(tmp_path):
    """Any tar reader sees one member per field and sample, named as WebDataset groups them."""
    SampleCache(tmp_path).get("k1", partial(_synthetic, 5))
    shard = tmp_path / "k1" / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        names = tar.getnames()
        assert names[:2] == ["00000000.image.npy", "00000000.segmentation.npy"]
        assert "00000004.id.txt" in names and tar.extractfile("00000004.id.txt").read() == b"train/4"
        image = np.load(io.BytesIO(tar.extractfile("00000003.image.npy").read()))
    assert image.dtype == np.uint8 and image.shape == (3, 32, 32)
    assert np.array_equal(image, (_synthetic(5)[3]["image"] * 255).round().to(torch.uint8).numpy())


def test_webdataset_reads_the_shards(tmp_path):
    """The shards are WebDataset's format: its own loader yields our samples, field by field."""
    import webdataset as wds

    cached = SampleCache(tmp_path).get("k1", partial(_synthetic, 6))
    direct = _synthetic(6)
    read = list(wds.WebDataset(str(tmp_path / "k1" / "shard-000000.tar"), shardshuffle=False).decode())
    assert [s["__key__"] for s in read] == [f"{i:08d}" for i in range(6)]
    for i, s in enumerate(read):
        assert s["id.txt"] == cached.ids[i] == f"train/{i}"
        assert np.array_equal(s["image.npy"], (direct[i]["image"] * 255).round().to(torch.uint8).numpy())
        for key in ("segmentation", "depth", "boxes", "labels", "keypoints"):
            assert np.array_equal(s[f"{key}.npy"], direct[i][key].numpy()), key


BUILDER = """
import sys
from domains import SyntheticDataset
from domains.cache import SampleCache

def build():
    with open(sys.argv[2], "a") as f:
        f.write("built\\n")
    return SyntheticDataset("c", "close-up", "train", 40, 32)

ds = SampleCache(sys.argv[1]).get("shared", build)
print(",".join(ds.ids[i] for i in range(len(ds))))
"""


def test_two_jobs_decode_a_split_once(tmp_path):
    """Two processes asking for the same split at once: one decodes it, the other waits and reads it."""
    log = tmp_path / "builds.log"
    cmd = [sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(log)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert log.read_text() == "built\n"
    assert outs[0] == outs[1] == ",".join(f"train/{i}" for i in range(40))


class _Breaks(torch.utils.data.Dataset):
    """A reader that fails on sample 3 (a corrupt file, a killed worker)."""

    def __init__(self) -> None:
        self.inner = _synthetic(6)
        self.info, self.ids = self.inner.info, self.inner.ids

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        if i == 3:
            raise OSError("disk went away")
        return self.inner[i]


def test_a_failed_build_leaves_nothing_a_reader_would_take(tmp_path):
    cache = SampleCache(tmp_path)
    with pytest.raises(OSError, match="disk went away"):
        cache.get("k", _Breaks)
    assert not (tmp_path / "k" / MANIFEST).exists() and not list(tmp_path.rglob(f"*{TMP_SUFFIX}"))
    assert len(cache.get("k", partial(_synthetic, 6))) == 6  # the next job builds it whole


def test_cache_on_an_fsspec_store():
    cache = SampleCache("memory://tmx-test-cache")
    ds = cache.get("k", partial(_synthetic, 4))
    assert isinstance(ds, CachedDataset) and torch.equal(ds[2]["segmentation"], _synthetic(4)[2]["segmentation"])
    assert cache.has("k") and not cache.has("other")


def test_same_seed_same_weights_whatever_the_worker_count(tmp_path):
    """Reading and augmenting in 0, 1 or 2 loader processes trains to bit-identical weights and metrics."""
    data = SampleCache(tmp_path).get("train", partial(_synthetic, 20))
    val = SampleCache(tmp_path).get("val", partial(_synthetic, 8, split="val"))
    info, task = data.info, get_task("detection")
    aug = partial(augment, size=32, flip_pairs=info.keypoints.flip_pairs if info.keypoints else ())
    weights, metrics = [], []
    for workers in (0, 1, 2):
        model = build_model("test_resnet", "detection", info, seed=3)
        train(model, task, Subset(data, nested_subset(20, 12, 0)), Schedule(steps=4, batch_size=4), seed=3,
              augment=aug, workers=workers)  # fmt: skip
        weights.append(model.state_dict())
        metrics.append(evaluate(model, task, val, task.metric(info), batch_size=3, workers=workers))
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        assert all(torch.equal(other[k], weights[0][k]) for k in other), "weights differ with the worker count"
    assert metrics[0] == metrics[1] == metrics[2]
    model = build_model("test_resnet", "detection", info, seed=3)  # and another seed trains otherwise
    train(model, task, Subset(data, nested_subset(20, 12, 0)), Schedule(steps=4, batch_size=4), seed=4, augment=aug)
    assert not all(torch.equal(model.state_dict()[k], weights[0][k]) for k in weights[0])


def test_subsets_are_random_nested_and_seeded():
    small, large = nested_subset(1000, 150, seed=0), nested_subset(1000, 400, seed=0)
    assert set(small) <= set(large) and len(set(small)) == 150 and small == sorted(small)
    assert small != list(range(150)) and max(small) > 900  # spread over the split, not its first files
    assert nested_subset(1000, 150, seed=0) == small and nested_subset(1000, 150, seed=1) != small
    assert nested_subset(7, 7, seed=3) == list(range(7))
    with pytest.raises(ValueError, match="expected 1 to 7"):
        nested_subset(7, 8, seed=0)


STUDY = """
name: s
datasets:
  - {name: a, domain: driving, train: 40}
  - {name: b, domain: aerial, train: 40}
target_sizes: [8, 16]
resources: {transfer: {num_cpus: 3}, baseline: {loader_workers: 1}}
"""


def test_subset_seed_is_part_of_the_job_key_and_workers_are_not():
    import yaml

    jobs = plan(parse_study(yaml.safe_load(STUDY), "s.yaml"))
    reseeded = plan(parse_study(yaml.safe_load(STUDY) | {"subset_seed": 1}, "s.yaml"))
    by_kind = {j.kind: j for j in jobs}
    assert by_kind["transfer"].loader_workers == 2 and by_kind["baseline"].loader_workers == 1
    assert by_kind["source"].loader_workers == 0 and by_kind["transfer"].train.pool == 40
    assert [j.key for j in jobs if j.kind == "source"] == [j.key for j in reseeded if j.kind == "source"]
    targets = [(a.key, b.key) for a, b in zip(jobs, reseeded, strict=True) if a.kind in ("baseline", "transfer")]
    assert targets and all(a != b for a, b in targets)
    loaded = parse_study(yaml.safe_load(STUDY) | {"resources": {"transfer": {"loader_workers": 0}}}, "s.yaml")
    assert {j.key for j in plan(loaded)} == {j.key for j in jobs}
