"""Running one job: `execute(job, upstream, store) -> JobResult`. Imports neither Ray nor MLflow.

The scheduler calls it inside a Ray task; tests may call it in-process. The
only durable outputs are the returned result (the tracker logs it) and, for
jobs that others build on, a checkpoint written atomically to the store.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import BinaryIO

import torch

from domains import Sample, SyntheticDataset
from matrix.plan import DataRef, Job
from tasks import get_task
from tasks.model import build_model
from tasks.train import Checkpoint, Evaluate, Hook, LossCurve, Schedule, materialize, train
from tasks.transfer import TMP_SUFFIX, TransferReport, save_checkpoint, transfer

HAS_DEPENDANTS = ("pretrain", "source")  # kinds whose checkpoint another job loads


@dataclass
class JobResult:
    key: str
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool
    checkpoint: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


class CheckpointStore:
    """Checkpoints addressed by job key under a storage root: ROOT/ab/abcdef....pt.

    The root is a local folder (the default, `OUTPUT/checkpoints`) or an
    fsspec URI (`s3://bucket/study`, `gs://...`; the matching fsspec backend,
    s3fs or gcsfs, must be installed on the driver and the workers). Writes
    are atomic: a local file is written under a temporary name and renamed; an
    object is uploaded from a finished local file (object stores publish an
    object only once its upload completes), so a killed job never leaves a
    partial checkpoint that a transfer would load.
    """

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        self.remote = "://" in root and not root.startswith("file://")
        # a local root is made absolute: workers may run in another folder
        self.root = root.rstrip("/") if self.remote else str(Path(root.removeprefix("file://")).resolve())

    def _fs(self):
        import fsspec

        return fsspec.core.url_to_fs(self.root)[0]

    def path(self, key: str) -> str:
        """Where `key`'s checkpoint lives: a local path or a URI."""
        return f"{self.root}/{key[:2]}/{key}.pt"

    def save(self, key: str, model, meta: dict) -> str:
        """Write `model`'s checkpoint for `key` atomically; returns its path or URI."""
        target = self.path(key)
        if not self.remote:
            return str(save_checkpoint(model, target, meta))
        with tempfile.TemporaryDirectory(prefix="tmx-ckpt-") as tmp:
            local = save_checkpoint(model, Path(tmp) / f"{key}.pt", meta)
            self._fs().put_file(str(local), target)
        return target

    def open(self, uri: str) -> BinaryIO:
        """The checkpoint at `uri` as a readable binary file (read whole: checkpoints here are small)."""
        if "://" not in uri or uri.startswith("file://"):
            return open(uri.removeprefix("file://"), "rb")  # noqa: SIM115 (the caller closes it)
        import fsspec

        with fsspec.open(uri, "rb") as f:
            return io.BytesIO(f.read())

    def sweep(self) -> int:
        """Remove temporary files left by writers on this host that are no longer alive (killed jobs)."""
        if self.remote:
            return 0  # uploads are published whole or not at all
        host, removed = socket.gethostname(), 0
        for tmp in Path(self.root).glob(f"*/.*{TMP_SUFFIX}"):
            parts = tmp.name.split(".")  # "", KEY, "pt", HOST..., PID, RANDOM, "tmp"
            try:
                pid = int(parts[-3])
            except (IndexError, ValueError):
                continue
            if ".".join(parts[3:-3]) == host and not _alive(pid):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dataset(ref: DataRef, image_size: int) -> torch.utils.data.Dataset:
    """The samples `ref` names at image_size: a catalog dataset read from disk, or a procedural one."""
    if ref.catalog is not None:
        from domains.catalog import open_entry

        entry, digest = ref.catalog
        return open_entry(ref.catalog_file, entry, digest, ref.split, image_size, ref.count, ref.dataset)
    return SyntheticDataset(ref.dataset, ref.domain, ref.split, ref.count, image_size, ref.seed, ref.mix, ref.blend)


@lru_cache(maxsize=16)
def _materialized(ref: DataRef, image_size: int) -> Sample:
    """Rendered once per worker process: transfers onto one target share its subset."""
    return materialize(dataset(ref, image_size))


def execute(job: Job, upstream: JobResult | None, store: CheckpointStore) -> JobResult:
    """Train `job` (from `upstream`'s checkpoint when it has one), evaluate it, return its result."""
    started = time.time()
    task = get_task(job.task, job.model)
    info = dataset(job.train, job.image_size).info
    fresh_init = "imagenet" if job.init == "imagenet" and job.upstream is None else "scratch"
    model = build_model(job.backbone, job.task, info, job.seed, init=fresh_init, options=job.model)
    if torch.cuda.is_available():  # with `resources: {KIND: {num_gpus: ...}}` Ray sets CUDA_VISIBLE_DEVICES
        model = model.cuda()
    label_space = task.label_space(info)
    report = TransferReport()
    if job.upstream is not None:
        if upstream is None or upstream.checkpoint is None:
            raise RuntimeError(f"{job.name}: upstream job {job.upstream} left no checkpoint")
        with store.open(upstream.checkpoint) as f:
            report = transfer(model, f, head=job.model.get("transfer_head", False), task=job.task,
                              label_space=label_space)  # fmt: skip
    curve = LossCurve(every=max(1, job.schedule["steps"] // 20))
    evaluation = Evaluate(task, _materialized(job.eval, job.image_size), lambda: task.metric(info))
    hooks: list[Hook] = [curve, evaluation]
    checkpoint = None
    if job.kind in HAS_DEPENDANTS:
        checkpoint = store.path(job.key)
        meta = {"key": job.key, "backbone": job.backbone, "task": job.task, "label_space": list(label_space)}
        hooks.append(Checkpoint(partial(store.save, job.key, meta=meta)))
    from domains.transforms import augment

    flip_pairs = info.keypoints.flip_pairs if info.keypoints else ()
    augmentation = partial(augment, size=job.image_size, flip_pairs=flip_pairs)  # Mensink's rescale, crop, flip
    train(model, task, _materialized(job.train, job.image_size), Schedule(**job.schedule), job.seed, tuple(hooks),
          augment=augmentation)  # fmt: skip
    return JobResult(
        key=job.key, metrics=evaluation.final, primary_metric=task.primary_metric,
        higher_is_better=task.higher_is_better, checkpoint=checkpoint, curve=curve.points, moved=report.moved,
        skipped=report.skipped, started=started, ended=time.time(),
    )  # fmt: skip
