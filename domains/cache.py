"""The decoded-sample cache: each (dataset, split, image size) decoded and resized once, read by every job.

    cache = SampleCache("outputs/demo/data")                    # a local folder or an fsspec URI
    ds = cache.get(key, lambda: FolderDataset(...), workers=2)  # builds the shards once, then reads them
    ds[i]                                                       # the standard sample, as the reader gave it
    ds.info, ds.ids                                             # DatasetInfo, one id (file name) per sample

`key` names the content (the catalog entry's digest, the split, the image
size and the reader's version: see `content_key`); two jobs asking for the
same key read the same shards, so 2,000 transfers onto 20 targets decode each
target's images once.

Layout, under ROOT/KEY/: WebDataset shards `shard-000000.tar`, ... (POSIX tar,
one member per field and sample: `00000042.image.npy`, `00000042.boxes.npy`,
..., and `00000042.id.txt`), plus `index.npy` (int64 [N, 1 + 2F]: each
sample's shard, then the byte offset and size of each field's member) and
`manifest.json` (fields, dtypes, ids, DatasetInfo), written last. Any tar
reader, and `webdataset.WebDataset(...).decode()`, reads the shards; we read a
sample with one ranged read, so random access needs no unpacking and memory
does not grow with the dataset.

Why tar + .npy: the shards are WebDataset's format (streamable from object
stores, readable by standard tools), .npy keeps decoded arrays exact and
needs no pickle; the index is what makes a map-style dataset (shuffled,
seeded, identical batches whatever the loader's worker count) read them.
Images are stored as uint8 (rounded from the reader's [0, 1] floats: at most
half a grey level off), labels in their smallest exact dtype.

Every file is written atomically (a temporary name recording host and pid,
then a rename; on an object store, an upload of a finished file), and the
manifest last, so a killed builder leaves no cache a reader would take as
whole; `sweep` removes the temporary files of dead writers on this host. On a
local root, builders of one key take turns (a lock file), so the second waits
and reads what the first wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.atomic import TMP_SUFFIX, _remote, atomic_file, storage_root, sweep
from domains.base import DatasetInfo, KeypointSchema, Sample

FORMAT = 1  # bump when the layout or the stored form of a sample changes
SHARD_BYTES = 256 << 20  # a new shard starts past this size
MANIFEST, INDEX = "manifest.json", "index.npy"


def code_version(*folders: Path) -> str:
    """A digest of the Python sources in `folders`: a cache written by other reader code is never read."""
    digest = hashlib.sha1()
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def content_key(*parts: Any) -> str:
    """The cache key of a decoded split: a hash of what determines its samples (`parts`) and the format."""
    text = json.dumps([FORMAT, *parts], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# -- writing ---------------------------------------------------------------------------------------


def _stored(key: str, value: torch.Tensor) -> np.ndarray:
    """A sample's tensor as it is stored: images uint8, integer labels in their smallest exact dtype."""
    if key == "image":
        return (value.clamp(0, 1) * 255.0).round_().to(torch.uint8).numpy()
    array = value.numpy()
    if array.dtype.kind in "iu" and array.size:
        lo, hi = int(array.min()), int(array.max())
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return array.astype(dtype)
    return array


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> tuple[int, int]:
    """Append member `name`; returns (offset of its data in the file, its size)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed: identical content gives identical bytes
    tar.addfile(info, io.BytesIO(data))
    padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE  # the data ends the member, padded to blocks
    return tar.offset - padded, len(data)


def info_to_dict(info: DatasetInfo) -> dict[str, Any]:
    return asdict(info)


def info_from_dict(data: dict[str, Any]) -> DatasetInfo:
    kp = data.get("keypoints")
    schema = None
    if kp is not None:
        schema = KeypointSchema(kp["category"], tuple(kp["names"]), tuple(map(tuple, kp["skeleton"])),
                                tuple(map(tuple, kp["flip_pairs"])), tuple(kp["sigmas"]))  # fmt: skip
    return DatasetInfo(name=data["name"], domain=data["domain"], tasks=tuple(data["tasks"]), classes=tuple(data["classes"]),
                       image_size=data["image_size"], things=tuple(data["things"]), keypoints=schema)  # fmt: skip


def write_shards(folder: Path, samples: Iterator[Sample], ids: list[str], info: DatasetInfo,
                 shard_bytes: int = SHARD_BYTES) -> None:  # fmt: skip
    """Write `samples` (in order, one per id) as WebDataset shards + index + manifest into local `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    fields: list[str] | None = None
    dtypes: dict[str, str] = {}
    rows: list[list[int]] = []
    shard, tar, out, names = -1, None, None, []
    stack = contextlib.ExitStack()
    with stack:
        for i, sample in enumerate(samples):
            if fields is None:
                fields = list(sample)
            if sorted(sample) != sorted(fields):
                raise ValueError(f"sample {ids[i]!r}: keys {sorted(sample)}; expected {sorted(fields)} like the first")
            if tar is None or out.tell() > shard_bytes:
                if tar is not None:
                    tar.close()
                    stack.close()
                shard += 1
                names.append(f"shard-{shard:06d}.tar")
                out = stack.enter_context(atomic_file(folder / names[-1]))
                tar = tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT)
            row = [shard]
            for key in fields:
                array = _stored(key, sample[key])
                dtypes[key] = str(sample[key].dtype).removeprefix("torch.")
                row += _add(tar, f"{i:08d}.{key}.npy", _npy(array))
            _add(tar, f"{i:08d}.id.txt", ids[i].encode())
            rows.append(row)
        if tar is not None:
            tar.close()
    if len(rows) != len(ids):
        raise ValueError(f"{len(rows)} samples for {len(ids)} ids; expected one sample per id")
    with atomic_file(folder / INDEX) as f:
        np.save(f, np.asarray(rows, np.int64).reshape(len(rows), -1))
    manifest = {"format": FORMAT, "length": len(rows), "fields": fields or [], "dtypes": dtypes, "shards": names,
                "ids": ids, "info": info_to_dict(info)}  # fmt: skip
    with atomic_file(folder / MANIFEST) as f:
        f.write(json.dumps(manifest).encode())


# -- reading ---------------------------------------------------------------------------------------


class CachedDataset(torch.utils.data.Dataset):
    """One decoded split read back from its shards: `ds[i]` is the sample the reader gave (images to 1/255)."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.remote = _remote(location)
        manifest = json.loads(self._read(MANIFEST))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{self.location}/{MANIFEST}: format {manifest.get('format')}; expected {FORMAT}")
        self.fields: list[str] = manifest["fields"]
        self.dtypes = {k: getattr(torch, v) for k, v in manifest["dtypes"].items()}
        self.shards: list[str] = manifest["shards"]
        self.ids: list[str] = manifest["ids"]
        self.info = info_from_dict(manifest["info"])
        self.index = np.load(io.BytesIO(self._read(INDEX)))  # [N, 1 + 2F]
        self._files: dict[int, int] = {}  # shard -> open file descriptor (per process: opened lazily)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        path = f"{self.location}/{name}"
        if self.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(path)
            return fs.cat_file(p, start=start, end=end)
        if start is None:
            return Path(path).read_bytes()
        return os.pread(self._fd(name), end - start, start)

    def _fd(self, name: str) -> int:
        if self._pid != os.getpid():  # a loader worker forked with our descriptors: open its own
            self._files, self._pid = {}, os.getpid()
        shard = self.shards.index(name)
        if shard not in self._files:
            self._files[shard] = os.open(f"{self.location}/{name}", os.O_RDONLY)
        return self._files[shard]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.index):
            raise IndexError(f"{self.location}: index {index} out of range [0, {len(self.index)})")
        row = self.index[index]
        offsets, sizes = row[1::2], row[2::2]
        start, end = int(offsets.min()), int((offsets + sizes).max())
        blob = self._read(self.shards[int(row[0])], start, end)
        sample: Sample = {}
        for key, offset, size in zip(self.fields, offsets.tolist(), sizes.tolist(), strict=True):
            array = np.load(io.BytesIO(blob[offset - start : offset - start + size]), allow_pickle=False)
            tensor = torch.from_numpy(array)
            sample[key] = tensor.float().div_(255.0) if key == "image" else tensor.to(self.dtypes[key])
        return sample

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_files": {}}

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._files.values():
                with contextlib.suppress(OSError):
                    os.close(fd)


class SampleCache:
    """Decoded splits under a storage root (a local folder or an fsspec URI), by content key."""

    def __init__(self, root: str | Path) -> None:
        self.remote, self.root = storage_root(root)

    def location(self, key: str) -> str:
        return f"{self.root}/{key}"

    def has(self, key: str) -> bool:
        if self.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(f"{self.location(key)}/{MANIFEST}")
            return fs.exists(p)
        return Path(self.location(key), MANIFEST).is_file()

    def get(self, key: str, build: Callable[[], torch.utils.data.Dataset], workers: int = 0,
            ids: Callable[[torch.utils.data.Dataset], list[str]] | None = None) -> CachedDataset:  # fmt: skip
        """The split cached under `key`, built first from `build()` (a dataset with `.info`) if absent.

        `workers` decode in parallel (a DataLoader's worker processes); `ids(dataset)` gives
        each sample's id (default: `dataset.ids` if it has them, else the index).
        """
        if not self.has(key):
            with self._turn(key):
                if not self.has(key):
                    self._build(key, build(), workers, ids)
        return CachedDataset(self.location(key))

    @contextlib.contextmanager
    def _turn(self, key: str) -> Iterator[None]:
        if self.remote:  # no lock on object stores: a second builder writes the same bytes
            yield
            return
        Path(self.root).mkdir(parents=True, exist_ok=True)
        with open(Path(self.root) / f"{key}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _build(self, key: str, dataset, workers: int, ids) -> None:
        names = ids(dataset) if ids else list(getattr(dataset, "ids", None) or map(str, range(len(dataset))))
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                             prefetch_factor=8 if workers else None)  # fmt: skip
        if not self.remote:
            write_shards(Path(self.location(key)), iter(loader), names, dataset.info)
            return
        import fsspec

        with tempfile.TemporaryDirectory(prefix="tmx-cache-") as tmp:
            write_shards(Path(tmp), iter(loader), names, dataset.info)
            fs, p = fsspec.core.url_to_fs(self.location(key))
            files = sorted(Path(tmp).iterdir(), key=lambda f: f.name == MANIFEST)  # the manifest last
            for f in files:
                fs.put_file(str(f), f"{p}/{f.name}")

    def sweep(self) -> int:
        """Remove temporary files of dead writers on this host (a killed builder's)."""
        return 0 if self.remote else sweep(self.root, f"*/.*{TMP_SUFFIX}")
