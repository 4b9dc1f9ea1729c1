"""Storage: a study's durable files under one root, by content key. Imports neither Ray nor MLflow.

    storage = Storage("outputs/demo")              # or an fsspec URI: s3://bucket/study, gs://...
    storage.save(key, model, meta)                 # ROOT/checkpoints/ab/abcdef....pt, written atomically
    storage.open(storage.path(key))                # a readable binary file
    storage.samples                                # domains.cache.SampleCache at ROOT/data: decoded splits
    storage.sweep()                                # temporary files of killed writers on this host, removed

A remote root needs the matching fsspec backend (s3fs, gcsfs) on the driver
and the workers. Writes are atomic: a local file is written under a
temporary name (recording host and pid) and renamed; an object is uploaded
from a finished local file (object stores publish an object only once its
upload completes), so a killed job never leaves a partial checkpoint that a
transfer would load, nor a partial decoded split.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import BinaryIO

from domains.atomic import TMP_SUFFIX, atomic_file, storage_root, sweep


class Storage:
    def __init__(self, root: str | Path) -> None:
        self.remote, self.root = storage_root(root)

    @property
    def samples(self):
        """The decoded-sample cache under ROOT/data (domains.cache.SampleCache: imports torch, so only here)."""
        from domains.cache import SampleCache

        return SampleCache(f"{self.root}/data")

    def path(self, key: str) -> str:
        """Where `key`'s checkpoint lives: a local path or a URI."""
        return f"{self.root}/checkpoints/{key[:2]}/{key}.pt"

    def save(self, key: str, model, meta: dict) -> str:
        """Write `model`'s checkpoint for `key` atomically; returns its path or URI."""
        from tasks.transfer import save_checkpoint

        target = self.path(key)
        meta = {"key": key, **meta}
        if not self.remote:
            with atomic_file(target) as f:
                save_checkpoint(model, f, meta)
            return target
        import fsspec

        with tempfile.TemporaryDirectory(prefix="tmx-ckpt-") as tmp:
            local = Path(tmp) / f"{key}.pt"
            save_checkpoint(model, local, meta)
            fsspec.core.url_to_fs(self.root)[0].put_file(str(local), target)
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
        # checkpoints at ROOT/checkpoints/ab/KEY.pt, decoded splits' files at ROOT/data/KEY/...: one level down each
        return sum(sweep(Path(self.root) / folder, f"*/.*{TMP_SUFFIX}") for folder in ("checkpoints", "data"))
