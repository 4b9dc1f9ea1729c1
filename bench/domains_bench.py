"""Bench: procedural rendering speed beside the tiny backbone's training speed, on one core.

Prints, at 64 and 128 px: images/s rendered per domain (all seven; every
sample with image, segmentation, depth, boxes, labels and keypoints), the
images/s a training step of `test_resnet` + the segmentation head consumes
(batch 16), and their ratio: above 1, one core renders faster than one core
trains. Beside them, the per-sample augmentation (Mensink's rescale, crop,
flip) and reading back from the decoded-sample cache (domains/cache.py), each as a ratio to training.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from domains import DOMAINS, SyntheticDataset  # noqa: E402
from domains.cache import SampleCache  # noqa: E402
from domains.transforms import augment  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.model import build_model  # noqa: E402
from tasks.data import InMemory  # noqa: E402
from tasks.train import Schedule, train  # noqa: E402


def render_rate(domain: str, size: int, n: int) -> float:
    ds = SyntheticDataset("bench", domain, "train", n, size)
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t0)


def augment_rate(size: int, n: int = 64) -> float:
    ds = SyntheticDataset("bench", "consumer", "train", n, size)
    samples = [ds[i] for i in range(n)]
    pairs = ds.info.keypoints.flip_pairs
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for s in samples:
        augment(s, gen, size=size, flip_pairs=pairs)
    return n / (time.perf_counter() - t0)


def cached_rate(size: int, n: int = 128) -> float:
    with tempfile.TemporaryDirectory() as folder:
        again = SampleCache(folder).get("bench", lambda: SyntheticDataset("bench", "consumer", "train", n, size))
        t0 = time.perf_counter()
        for i in range(n):
            again[i]
        return n / (time.perf_counter() - t0)


def train_rate(size: int, steps: int = 10, batch: int = 16) -> float:
    ds = SyntheticDataset("bench", "driving", "train", 64, size)
    data = InMemory.of(ds)
    model = build_model("test_resnet", "segmentation", ds.info, seed=0)
    task = get_task("segmentation")
    train(model, task, data, Schedule(steps=2, batch_size=batch), seed=0)  # warm up
    t0 = time.perf_counter()
    train(model, task, data, Schedule(steps=steps, batch_size=batch), seed=0)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    for size in (64, 128):
        trains = train_rate(size)
        rates = {d: render_rate(d, size, 40) for d in DOMAINS.names()}
        slowest = min(rates.values())
        cells = "  ".join(f"{d} {r:6.0f}" for d, r in rates.items())
        print(f"{size:>4} px  render img/s: {cells}")
        print(f"{size:>4} px  train img/s (test_resnet + segmentation, batch 16): {trains:6.0f}; "
              f"slowest render / train = {slowest / trains:.2f}")
        aug, cached = augment_rate(size), cached_rate(size)
        print(f"{size:>4} px  augment img/s {aug:6.0f} (augment / train = {aug / trains:.2f}); "
              f"cached read img/s {cached:6.0f} (cached read / train = {cached / trains:.2f})")


if __name__ == "__main__":
    main()
