"""Running one job: `execute(job, upstream, storage) -> JobResult`. Imports neither Ray nor MLflow.

The scheduler calls it inside a Ray task; tests may call it in-process. It
turns a Job into a training recipe (tasks/recipe.py) and its data: each
split decoded once into the storage's sample cache (domains/cache.py), the
job's subset drawn from it (a multi-source's: its datasets' splits, mixed by
domains/mixture.py). The only durable outputs are the returned result
(the tracker logs it), the decoded splits, and for jobs that others build on,
a checkpoint written atomically to the storage.
"""

from __future__ import annotations

import contextlib
import time
from functools import partial
from pathlib import Path

import torch

from domains import SyntheticDataset
from domains.base import nested_subset
from domains.cache import code_version, content_key
from domains.mixture import Mixture
from matrix.plan import DataRef, Job
from matrix.results import JobResult
from matrix.store import Storage
from tasks.base import EmptySplitError
from tasks.data import Subset
from tasks.recipe import Recipe, run_recipe
from tasks.train import Schedule

HAS_DEPENDANTS = ("pretrain", "source")  # kinds whose checkpoint another job loads


def reader(ref: DataRef, image_size: int) -> torch.utils.data.Dataset:
    """The whole split `ref` draws from, as its reader decodes it: a catalog split on disk, or a procedural one."""
    if ref.catalog is not None:
        from domains.catalog import open_entry

        entry, digest = ref.catalog
        return open_entry(ref.catalog_file, entry, digest, ref.split, image_size, None, ref.dataset)
    return SyntheticDataset(ref.dataset, ref.domain, ref.split, ref.pool, image_size, ref.seed, ref.mix, ref.blend)


def cache_key(ref: DataRef, image_size: int) -> str:
    """The content key of `ref`'s whole split decoded at `image_size` (domains.cache): what its samples depend on."""
    here = Path(__file__).resolve().parents[1] / "domains"
    if ref.catalog is not None:
        root = Path(ref.catalog_file).resolve().parent  # an entry's paths are relative to its catalog
        return content_key("catalog", ref.dataset, ref.catalog, str(root), ref.split, image_size,
                           code_version(here, here / "formats"))  # fmt: skip
    return content_key("procedural", ref.dataset, ref.domain, ref.seed, ref.split, ref.pool, ref.mix, ref.blend,
                       image_size, code_version(here, here / "synthetic"))  # fmt: skip


def dataset(ref: DataRef, image_size: int, storage: Storage, workers: int = 0) -> Subset | Mixture:
    """The `ref.count` samples `ref` names at `image_size`, read from the storage's decoded-sample cache
    (decoded there first, once per split, by `workers` processes): a seeded, nested subset of the split;
    for a mixture (a multi-source's data), its parts so read, drawn with their weights (domains/mixture.py)."""
    if ref.parts:
        parts = [(part.dataset, dataset(part, image_size, storage, workers)) for part, _ in ref.parts]
        return Mixture(ref.dataset, parts, [weight for _, weight in ref.parts], ref.count, ref.subset_seed)
    if ref.catalog is not None:  # a cached split was decoded as planned, but an edited entry means: plan again
        from domains.catalog import planned_entry

        planned_entry(ref.catalog_file, *ref.catalog)
    split = storage.samples.get(cache_key(ref, image_size), partial(reader, ref, image_size), workers)
    if ref.count > len(split):
        where = f"{ref.catalog_file}: datasets.{ref.catalog[0]}.splits.{ref.split}" if ref.catalog else ref.dataset
        raise ValueError(f"{where}: {len(split)} images; expected at least the {ref.count} the study asks for")
    return Subset(split, nested_subset(len(split), ref.count, ref.subset_seed))


def job_data(job: Job, storage: Storage) -> tuple[Subset | Mixture, Subset | Mixture]:
    """The samples `job` trains on and those it is evaluated on (see `dataset`); a mixture that lacks the
    job's task type (parts without its labels, or with different keypoint schemas) is refused here."""
    train_data = dataset(job.train, job.image_size, storage, job.loader_workers)
    eval_data = dataset(job.eval, job.image_size, storage, job.loader_workers)
    for data in (train_data, eval_data):
        if isinstance(data, Mixture):
            data.check_task(job.task)
    return train_data, eval_data


@contextlib.contextmanager
def _naming_the_split(job: Job):
    """An undefined metric (tasks.base.EmptySplitError) fails the job naming the dataset and split it scored."""
    try:
        yield
    except EmptySplitError as e:
        raise EmptySplitError(f"{job.eval.dataset} ({job.eval.split} split, {job.task}): {e}") from None


def reference(job: Job, store: Storage) -> JobResult:
    """What the trivial predictor of `job.task`, fitted on the job's training subset, scores on its eval split."""
    from tasks.reference import fit_and_score

    started = time.time()
    train_data, eval_data = job_data(job, store)
    with _naming_the_split(job):
        outcome = fit_and_score(job.task, train_data, eval_data, job.model, workers=job.loader_workers)
    return JobResult(key=job.key, metrics=outcome.metrics, primary_metric=outcome.primary_metric,
                     higher_is_better=outcome.higher_is_better, started=started, ended=time.time(),
                     train_ids=train_data.ids)  # fmt: skip


def proxy(job: Job, upstream: JobResult | None, store: Storage) -> JobResult:
    """The transferability proxies of `upstream`'s (a source's) frozen backbone on the job's training subset
    (tasks/features.py samples the features, analysis/proxies.py scores them): metrics `logme` (the primary one),
    `gbc`, `hscore`, `hscore_shrunk`, for detection also `box_...` (its objects against their normalised boxes), and
    `domain_similarity` between `images` of the source's training images (the job's `eval`) and the target's
    subset; `features`: how many feature vectors were scored."""
    from analysis.proxies import PROXIES, domain_similarity
    from tasks.features import load_encoder, pooled_features, proxy_features

    if upstream is None or upstream.checkpoint is None:
        raise RuntimeError(f"{job.name}: upstream job {job.upstream} left no checkpoint")
    started = time.time()
    target = dataset(job.train, job.image_size, store, job.loader_workers)
    source = dataset(job.eval, job.image_size, store, job.loader_workers)  # its images only: no labels read
    with store.open(upstream.checkpoint) as f:
        encoder = load_encoder(f, job.backbone)
    with _naming_the_split(job):
        feats = proxy_features(encoder, target, job.task, max_samples=job.schedule["samples"], seed=job.seed,
                               workers=job.loader_workers)  # fmt: skip
    metrics = {}
    for name, (f, y, regression) in feats.targets().items():
        prefix = "" if name == next(iter(feats.targets())) else f"{name}_"
        metrics |= {f"{prefix}{proxy}": float(fn(f, y, regression=regression)) for proxy, fn in PROXIES.items()}
    seen = pooled_features(encoder, source, max_images=job.schedule["images"], seed=job.seed, workers=job.loader_workers)
    metrics["domain_similarity"] = float(domain_similarity(seen, feats.pooled))
    metrics["features"] = float(len(feats.f))
    return JobResult(key=job.key, metrics=metrics, primary_metric="logme", higher_is_better=True, started=started,
                     ended=time.time(), train_ids=target.ids)  # fmt: skip


def execute(job: Job, upstream: JobResult | None, store: Storage) -> JobResult:
    """Train `job` (from `upstream`'s checkpoint when it has one), evaluate it, return its result; a reference
    fits the trivial predictor instead, a proxy scores the upstream's frozen backbone."""
    if job.kind == "reference":
        return reference(job, store)
    if job.kind == "proxy":
        return proxy(job, upstream, store)
    started = time.time()
    workers = job.loader_workers
    train_data, eval_data = job_data(job, store)
    fresh_init = "imagenet" if job.init == "imagenet" and job.upstream is None else "scratch"
    recipe = Recipe(task=job.task, backbone=job.backbone, schedule=Schedule(**job.schedule), seed=job.seed,
                    image_size=job.image_size, init=fresh_init, model=job.model, workers=workers)  # fmt: skip
    save = partial(store.save, job.key) if job.kind in HAS_DEPENDANTS else None
    with contextlib.ExitStack() as stack:
        weights = None
        if job.upstream is not None:
            if upstream is None or upstream.checkpoint is None:
                raise RuntimeError(f"{job.name}: upstream job {job.upstream} left no checkpoint")
            weights = stack.enter_context(store.open(upstream.checkpoint))
        with _naming_the_split(job):
            outcome = run_recipe(recipe, train_data, eval_data, upstream=weights, save=save)
    return JobResult(
        key=job.key, metrics=outcome.metrics, primary_metric=outcome.primary_metric,
        higher_is_better=outcome.higher_is_better, checkpoint=store.path(job.key) if save else None,
        curve=outcome.curve, moved=outcome.moved, skipped=outcome.skipped, started=started, ended=time.time(),
        train_ids=train_data.ids,
    )  # fmt: skip
