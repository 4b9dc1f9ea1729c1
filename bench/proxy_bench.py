"""Bench: seconds per (source, target) pair for the transferability proxies, beside one finetune job of that pair.

At the demo's scale (configs/demo.yaml: image size, smallest target size, finetuning schedule per task type, val
split size) and the study's proxy defaults (matrix.spec.ProxySpec: feature vectors sampled, source images
pooled), for one source (a segmentation source on the demo's `city`) and one target per task type (the demo's
datasets that have it), measured side by side in alternating rounds on one CPU thread (OMP_NUM_THREADS, default 1:
what Ray gives a job of the study's default `num_cpus: 1`; set it to measure more):

  proxy     what a proxy job runs: the source's backbone + neck from its checkpoint (tasks.features.load_encoder),
            features of the target's training subset (proxy_features), every labelled proxy on every target
            (analysis.proxies.PROXIES; detection also scores its boxes), the source images' pooled features
            and the domain similarity;
  finetune  what a transfer job runs: tasks.recipe.run_recipe (build, transfer, train, evaluate on the val split).

Both read the same samples, rendered before timing (in a study the decoded-sample cache serves them to both).
One untimed proxy run per target first (lazy imports: scikit-learn for the shrunk H-score); the source's
untimed training warms the training path. Prints the best of the rounds for each, the proxy's parts (features:
checkpoint to feature vectors; proxies: every labelled one; domain: pooled source features and the
similarity), and finetune / proxy.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and torch start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.proxies import PROXIES, domain_similarity  # noqa: E402
from domains import SyntheticDataset  # noqa: E402
from domains.base import nested_subset  # noqa: E402
from matrix.spec import ProxySpec, load_study  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.data import InMemory, Subset  # noqa: E402
from tasks.features import load_encoder, pooled_features, proxy_features  # noqa: E402
from tasks.model import build_model  # noqa: E402
from tasks.recipe import Recipe, run_recipe  # noqa: E402
from tasks.train import Schedule, train  # noqa: E402
from tasks.transfer import save_checkpoint  # noqa: E402

DEMO = load_study(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
PROXY = DEMO.proxies or ProxySpec()
SOURCE = "city"  # the demo's largest source; its segmentation model is the source of every pair
TARGETS = {"segmentation": "fields", "depth": "fields", "detection": "city", "keypoints": "home"}
SOURCE_STEPS = 30  # the source's training is not timed: a short run makes it a real checkpoint
ROUNDS = 2


def split(name: str, which: str, count: int | None = None) -> InMemory:
    """The demo dataset `name`'s `which` split at the demo's image size, rendered now; `count`: its nested subset."""
    ds = DEMO.dataset_named(name)
    pool = DEMO.split_size(ds, which)
    data = SyntheticDataset(ds.name, ds.domain, which, pool, DEMO.image_size, ds.seed)
    picked = data if count is None else Subset(data, nested_subset(pool, count, DEMO.subset_seed))
    out = InMemory.of(picked)
    out.info = data.info
    return out


def source_checkpoint(data: InMemory) -> bytes:
    model = build_model(DEMO.backbone, "segmentation", data.info, seed=DEMO.source_seed)
    train(model, get_task("segmentation"), data, Schedule(steps=SOURCE_STEPS, batch_size=16), seed=DEMO.source_seed)
    buffer = io.BytesIO()
    save_checkpoint(model, buffer, {"backbone": DEMO.backbone, "task": "segmentation", "label_space": []})
    return buffer.getvalue()


def run_proxy(checkpoint: bytes, task: str, target: InMemory, source: InMemory) -> dict[str, float]:
    """One proxy job; returns the seconds of its parts."""
    t0 = time.perf_counter()
    encoder = load_encoder(io.BytesIO(checkpoint))
    feats = proxy_features(encoder, target, task, max_samples=PROXY.samples, seed=0)
    t1 = time.perf_counter()
    scores = [fn(f, y, regression=regression) for f, y, regression in feats.targets().values()
              for fn in PROXIES.values()]  # fmt: skip
    t2 = time.perf_counter()
    similarity = domain_similarity(pooled_features(encoder, source, max_images=PROXY.images, seed=0), feats.pooled)
    t3 = time.perf_counter()
    assert all(math.isfinite(s) for s in [*scores, similarity]), (task, scores, similarity)
    return {"features": t1 - t0, "proxies": t2 - t1, "similarity": t3 - t2, "total": t3 - t0, "rows": len(feats.f)}


def run_finetune(checkpoint: bytes, task: str, target: InMemory, val: InMemory) -> float:
    recipe = Recipe(task, DEMO.backbone, Schedule(**DEMO.finetune_for(task)), seed=0, image_size=DEMO.image_size)
    t0 = time.perf_counter()
    run_recipe(recipe, target, val, upstream=io.BytesIO(checkpoint))
    return time.perf_counter() - t0


def main() -> None:
    size = min(DEMO.target_sizes)
    source = split(SOURCE, "train")
    checkpoint = source_checkpoint(source)
    print(f"proxy job vs finetune job per (source, target) pair: demo scale ({DEMO.image_size} px, {size} target "
          f"images, finetune per configs/demo.yaml), {PROXY.samples} feature vectors, {PROXY.images} source images, "
          f"source {SOURCE!r} (segmentation), CPU threads: {torch.get_num_threads()}, best of {ROUNDS}")  # fmt: skip
    print(f"    {'target task':<14}{'target':<8}{'rows':>6}{'features':>10}{'proxies':>9}{'domain':>8}{'proxy s':>9}"
          f"{'finetune s':>12}{'ratio':>8}")  # fmt: skip
    for task, name in TARGETS.items():
        target, val = split(name, "train", size), split(name, "val")
        run_proxy(checkpoint, task, target, source)  # warm-up, untimed
        proxies, finetunes = [], []
        for _ in range(ROUNDS):  # alternating: both see the same machine load
            proxies.append(run_proxy(checkpoint, task, target, source))
            finetunes.append(run_finetune(checkpoint, task, target, val))
        best = min(proxies, key=lambda p: p["total"])
        fine = min(finetunes)
        print(f"    {task:<14}{name:<8}{best['rows']:>6}{best['features']:>10.3f}{best['proxies']:>9.3f}"
              f"{best['similarity']:>8.3f}{best['total']:>9.3f}{fine:>12.2f}{fine / best['total']:>7.0f}x")  # fmt: skip
        assert np.isfinite(fine)


if __name__ == "__main__":
    main()
