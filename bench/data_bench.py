"""Data bench: a job's memory does not grow with its dataset, streaming keeps up with in-memory training,
and cached reads against decoding PNG/JPEG. Everything side by side in one run; prints ratios.

    python bench/data_bench.py                       # 500 vs 8,000 images at 128 px (exports ~3 min once)
    python bench/data_bench.py --data /tmp/tmx-data  # keep (or reuse) the exported catalog there

(a) A catalog dataset on disk (images + label-id masks, exported from the
procedural driving domain) of 500 and of 8,000 images: a segmentation source
trained for a fixed number of steps, as a job runs it (its split decoded once
into the sample cache, then streamed through loader workers). Peak memory of
the job's process tree (the sum of its processes' PSS, so pages shared with
loader workers count once), and the 8,000 / 500 ratio (target <= 1.15).
(b) On the same 500 images: training images per second streamed from the
cache vs the in-memory path (every sample decoded into RAM first, augmented
in the training process: what jobs did before), ratio (target >= 0.9).
(c) Reading one sample at 256 and 512 px: decoding PNG and JPEG files and
resizing (the reader) vs reading the decoded cache, images per second on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

JOB = r"""
import json, sys, time
import torch
from functools import partial
from domains.catalog import load_catalog
from domains.transforms import augment
from matrix.execute import dataset
from matrix.plan import DataRef
from matrix.store import Storage
from tasks import get_task
from tasks.data import InMemory
from tasks.model import build_model
from tasks.train import Schedule, train

catalog_file, entry, mode, store, steps, workers, size = sys.argv[1:8]
steps, workers, size = int(steps), int(workers), int(size)
catalog = load_catalog(catalog_file)
count = len(catalog.open(entry, "train", None))
ref = DataRef(entry, "driving", 0, "train", count, catalog=(entry, catalog.get(entry).digest()), catalog_file=catalog_file)
t0 = time.perf_counter()
if mode == "stream":
    data = dataset(ref, size, Storage(store), workers)
else:  # the in-memory path: the whole split decoded into this process, augmented here
    data = InMemory.of(catalog.open(entry, "train", size))
prepared = time.perf_counter() - t0
task = get_task("segmentation")
model = build_model("test_resnet", "segmentation", data.info, seed=0)
sched = Schedule(steps=steps, batch_size=16)
aug = partial(augment, size=size)
train(model, task, data, Schedule(steps=3, batch_size=16), seed=1, augment=aug, workers=workers)  # warm-up
t0 = time.perf_counter()
train(model, task, data, sched, seed=0, augment=aug, workers=workers if mode == "stream" else 0)
trained = time.perf_counter() - t0
print(json.dumps({"images": count, "prepare_s": prepared, "train_s": trained, "img_per_s": steps * 16 / trained}))
"""


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _tree_pss(pid: int) -> int:
    """Bytes of memory of `pid`'s process tree: the sum of their PSS (a page shared by n processes counts 1/n)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_job(args: list[str]) -> dict:
    """Run JOB in a fresh process; its result plus the peak PSS of its process tree (sampled every 0.2 s)."""
    proc = subprocess.Popen([sys.executable, "-c", JOB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)  # fmt: skip
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss(proc.pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"job failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]) | {"peak_mb": peak[0] / 2**20}


def export(folder: Path, n: int, small: int, size: int) -> Path:
    """The procedural driving domain written as images + masks (n train, 64 val) and a catalog with two
    entries over it: `large` (every image) and `small` (the first `small`, by a split list)."""
    import yaml

    from domains import SyntheticDataset
    from domains.formats.export import export_dataset

    catalog = folder / "catalog.yaml"
    if catalog.is_file() and len(list((folder / "images" / "train").glob("*.png"))) == n:
        return catalog
    t0 = time.perf_counter()
    splits = {"train": SyntheticDataset("large", "driving", "train", n, size), "val": SyntheticDataset("large", "driving", "val", 64, size)}
    export_dataset("large", "driving", splits, folder, formats=("masks",))
    (folder / "small.txt").write_text("".join(f"{i:06d}.png\n" for i in range(small)))
    data = yaml.safe_load(catalog.read_text())
    large = data["datasets"]["large"]
    data["datasets"]["small"] = large | {"splits": {"train": large["splits"]["train"] | {"list": "small.txt"},
                                                    "val": large["splits"]["val"]}}  # fmt: skip
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"exported {n} + 64 images at {size} px in {time.perf_counter() - t0:.0f} s")
    return catalog


def decode_vs_cache(folder: Path, count: int = 48) -> list[tuple[str, int, float, float]]:
    """Images per second on one core: the reader (decode + resize) of PNG and JPEG files vs cached reads."""
    import torch
    from PIL import Image

    from domains import SyntheticDataset
    from domains.cache import SampleCache
    from domains.formats.folder import FolderDataset
    from domains.formats.images import write_image
    from domains.catalog import parse_catalog

    torch.set_num_threads(1)
    src = SyntheticDataset("photos", "driving", "train", count, 640)  # rendered once, larger than both sizes
    for i in range(count):
        if not (folder / "png" / f"{i:04d}.png").is_file():
            write_image(folder / "png" / f"{i:04d}.png", src[i]["image"])
            (folder / "jpg").mkdir(exist_ok=True)
            Image.open(folder / "png" / f"{i:04d}.png").save(folder / "jpg" / f"{i:04d}.jpg", quality=90)
    rows = []
    for fmt in ("png", "jpg"):
        catalog = parse_catalog({"root": str(folder), "datasets": {fmt: {"domain": "driving", "tasks": ["depth"],
                                 "depth": {"suffix": ".npy"}, "splits": {"train": {"images": fmt, "depth": fmt}}}}},
                                folder / "c.yaml")  # fmt: skip
        for size in (256, 512):
            reader = FolderDataset(fmt, catalog.get(fmt), "train", catalog.root_dir, size)
            reader.tasks = ()  # images only: what decoding costs
            t0 = time.perf_counter()
            for i in range(count):
                reader[i]
            decode = count / (time.perf_counter() - t0)
            cached = SampleCache(folder / "cache").get(f"{fmt}-{size}", lambda r=reader: r)
            t0 = time.perf_counter()
            for _ in range(3):
                for i in range(count):
                    cached[i]
            read = 3 * count / (time.perf_counter() - t0)
            rows.append((fmt, size, decode, read))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=500)
    p.add_argument("--large", type=int, default=8000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--workers", type=int, default=1, help="loader workers of the streaming job")
    p.add_argument("--data", help="folder for the exported catalog (kept; reused when complete)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tmx-data-bench-") as tmp:
        folder = Path(args.data) if args.data else Path(tmp) / "export"
        catalog = str(export(folder, args.large, args.small, args.size))
        common = [str(args.steps), str(args.workers), str(args.size)]
        small = run_job([catalog, "small", "stream", f"{tmp}/store-small", *common])
        large = run_job([catalog, "large", "stream", f"{tmp}/store-large", *common])
        memory = run_job([catalog, "small", "memory", f"{tmp}/unused", *common])
        memory_large = run_job([catalog, "large", "memory", f"{tmp}/unused", *common])
        again = run_job([catalog, "small", "stream", f"{tmp}/store-small", *common])  # cache built: reads only
        inline = run_job([catalog, "small", "stream", f"{tmp}/store-small", str(args.steps), "0", str(args.size)])
        print(f"\n(a) peak memory of a source job ({args.steps} steps of 16 at {args.size} px, {args.workers} loader "
              f"worker(s); split decoded into the cache by the job):")  # fmt: skip
        for name, r in (("500", small), ("8,000", large)):
            print(f"    {r['images']:>5} images: {r['peak_mb']:7.0f} MB peak, decoded into the cache in "
                  f"{r['prepare_s']:.1f} s")  # fmt: skip
        print(f"    ratio {large['images']:,} / {small['images']:,} images: {large['peak_mb'] / small['peak_mb']:.3f} "
              f"(target <= 1.15)")
        print(f"    the in-memory path (the split decoded into the job's memory): {memory['peak_mb']:.0f} MB on "
              f"{memory['images']:,}, {memory_large['peak_mb']:.0f} MB on {memory_large['images']:,}: ratio "
              f"{memory_large['peak_mb'] / memory['peak_mb']:.2f}")  # fmt: skip
        print(f"(b) training images/s on {small['images']} images, in memory (read and augmented in the training "
              f"process): {memory['img_per_s']:.1f}; streamed from the cache, read and augmented")  # fmt: skip
        for label, r in ((f"by {args.workers} loader worker(s)", again), ("in the training process", inline)):
            print(f"    {label}: {r['img_per_s']:.1f}, ratio {r['img_per_s'] / memory['img_per_s']:.2f} (target >= 0.9)")
        print("(c) one core, images/s: decode + resize (the reader) vs cached read")
        for fmt, size, decode, read in decode_vs_cache(Path(args.data or tmp) / "photos"):
            print(f"    {fmt} at {size} px: decode {decode:7.1f}, cached {read:7.1f}: {read / decode:5.1f}x")


if __name__ == "__main__":
    main()
