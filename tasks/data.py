"""Input pipelines: a job's samples stream through a DataLoader whose workers read, augment and collate.

    batches = train_loader(dataset, Schedule(steps=100, batch_size=16), seed=0, augment=aug, workers=2)
    for batch in batches: ...               # exactly `steps` batches; dense keys [B, ...], per-object keys lists
    for batch in eval_loader(dataset, 32, workers=2): ...

Determinism: the batch order and each sample's augmentation seed are drawn in
the main process from one generator seeded by `seed` (`StepBatches`), and a
worker augments sample i with a generator seeded by the seed drawn for it, so
the same seed gives the same batches whatever the worker count (0, 1, 2...).
Nothing is held whole: a worker reads the samples of the batches it is given.
On CUDA, batches come in pinned memory for non-blocking copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from domains import INSTANCE, Sample
from tasks.base import Batch

Augment = Callable[[Sample, torch.Generator], Sample]
PREFETCH = 4  # batches each worker keeps ready


def collate(samples: list[Sample]) -> Batch:
    """Samples -> a batch: dense keys stacked [B, ...], per-object keys (`INSTANCE`) as lists of B tensors."""
    return {k: (list(v) if k in INSTANCE else torch.stack(v)) for k, v in
            ((k, [s[k] for s in samples]) for k in samples[0])}  # fmt: skip


class StepBatches(torch.utils.data.Sampler):
    """`steps` batches of (index, augmentation seed) over `n` samples, reshuffled each epoch, from `seed`.

    An epoch ends when the next batch would not fit (the remainder is dropped),
    unless the dataset is smaller than a batch: then each batch is all of it.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int) -> None:
        if n == 0:
            raise ValueError("no samples to train on; expected a non-empty dataset")
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed)
        order, cursor = torch.randperm(self.n, generator=generator), 0
        for _ in range(self.steps):
            if cursor + self.batch_size > self.n and cursor > 0:  # next epoch
                order, cursor = torch.randperm(self.n, generator=generator), 0
            idx = order[cursor : cursor + self.batch_size].tolist()
            cursor += self.batch_size
            seeds = torch.randint(0, 2**62, (len(idx),), generator=generator).tolist()
            yield list(zip(idx, seeds, strict=True))


class Augmented(torch.utils.data.Dataset):
    """`dataset` indexed by (index, seed): sample `index` augmented with a generator seeded by `seed`."""

    def __init__(self, dataset: torch.utils.data.Dataset, augment: Augment | None) -> None:
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Sample:
        index, seed = item
        sample = self.dataset[index]
        return sample if self.augment is None else self.augment(sample, torch.Generator().manual_seed(seed))


def _options(workers: int, device: torch.device | None) -> dict[str, Any]:
    cuda = device is not None and device.type == "cuda"
    return {"num_workers": workers, "collate_fn": collate, "pin_memory": cuda, "persistent_workers": workers > 0,
            "prefetch_factor": PREFETCH if workers else None}  # fmt: skip


class _OneThread:
    """Iterates `loader` with torch on one thread while it reads: loader workers run on one thread, and
    some CPU kernels (antialiased resizing) round differently when split over threads, so reading in this
    process the same way keeps batches identical whatever the worker count."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        batches = iter(self.loader)
        while True:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                torch.set_num_threads(threads)
            yield batch


def train_loader(dataset: torch.utils.data.Dataset, batch_size: int, steps: int, seed: int,
                 augment: Augment | None = None, workers: int = 0,
                 device: torch.device | None = None) -> Iterable[Batch]:  # fmt: skip
    """The `steps` training batches of `dataset` (see the module docstring for what stays the same)."""
    sampler = StepBatches(len(dataset), batch_size, steps, seed)
    loader = torch.utils.data.DataLoader(Augmented(dataset, augment), batch_sampler=sampler,
                                         generator=torch.Generator().manual_seed(seed), **_options(workers, device))  # fmt: skip
    return loader if workers else _OneThread(loader)


def eval_loader(dataset: torch.utils.data.Dataset, batch_size: int = 32, workers: int = 0,
                device: torch.device | None = None) -> torch.utils.data.DataLoader:  # fmt: skip
    """`dataset` in order, in batches of `batch_size` (the last one shorter)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                       generator=torch.Generator().manual_seed(0), **_options(workers, device))  # fmt: skip


class Subset(torch.utils.data.Dataset):
    """The samples of `dataset` at `indices` (in that order); `ids` and `info` follow."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.info = getattr(dataset, "info", None)
        all_ids = getattr(dataset, "ids", None)
        self.ids = [all_ids[i] for i in self.indices] if all_ids is not None else [str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[index]]


class InMemory(torch.utils.data.Dataset):
    """Samples held in a list (small data in tests and benches; jobs stream theirs)."""

    def __init__(self, samples: list[Sample], info: Any = None) -> None:
        self.samples, self.info = samples, info

    @classmethod
    def of(cls, dataset: torch.utils.data.Dataset) -> InMemory:
        return cls([dataset[i] for i in range(len(dataset))], getattr(dataset, "info", None))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]
