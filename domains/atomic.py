"""Files that appear whole or not at all, on a local folder or an fsspec root; no torch, no numpy.

    with atomic_file(path) as f: f.write(data)     # written under a temporary name, then renamed
    sweep(root, "**/*.tmp")                        # temporary files of dead writers on this host, removed
    remote, root = storage_root("s3://bucket/x")   # (True, "s3://bucket/x"); a local folder made absolute

A temporary name records the writer's host and pid (.NAME.HOST.PID.RANDOM.tmp), so `sweep` removes only what
writers that died on this host left. Used by the sample cache (domains/cache.py) and the checkpoint storage
(matrix/store.py), which a driver opens without importing torch.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def temporary_name(path: str | Path) -> str:
    """A temporary sibling name for `path` that records who writes it: .NAME.HOST.PID.RANDOM.tmp."""
    path = Path(path)
    return str(path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}"))


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Any]:
    """Open `path` for binary writing so that it appears whole or not at all (write, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep(root: str | Path, pattern: str) -> int:
    """Remove temporary files matching `pattern` under `root` left by writers on this host that are dead."""
    host, removed = socket.gethostname(), 0
    for tmp in Path(root).glob(pattern):
        parts = tmp.name.split(".")  # "", NAME..., HOST..., PID, RANDOM, "tmp"
        try:
            pid = int(parts[-3])
        except (IndexError, ValueError):
            continue
        if tmp.name.endswith(f".{host}.{pid}.{parts[-2]}{TMP_SUFFIX}") and not _alive(pid):
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


def _remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def storage_root(root: str | Path) -> tuple[bool, str]:
    """(remote?, the root as used): an fsspec URI as given, a local folder made absolute (workers may run
    in another folder)."""
    root = str(root)
    remote = _remote(root)
    return remote, root.rstrip("/") if remote else str(Path(root.removeprefix("file://")).resolve())
