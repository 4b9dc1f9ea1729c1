"""Per-job system metrics: CPU, memory and, where NVIDIA's management library finds a GPU, GPU utilisation and
memory, sampled in the worker while a job runs and logged by the driver under MLflow's `system/...` names.

    fn = Sampled(execute, interval=10.0)   # runs `execute`, and puts the samples on its JobResult
    result = fn(job, upstream, storage)
    result.system                           # [(time, {"cpu_utilization_percentage": 37.5, ...}), ...]

The samplers are MLflow's own (`mlflow.system_metrics.metrics`: psutil for CPU and memory, nvidia-ml-py for
GPUs), so the names and units are the ones MLflow's UI charts under "System metrics"; the worker only samples
and never writes to the tracking store (the driver stays its only writer, which a sqlite store needs). Node-wide
figures are what MLflow samples: a node running several jobs shows their sum. So each sample also has the job's
own process tree (the worker and its data-loading processes): `process_cpu_utilization_percentage` (100 = one
core busy) and `process_memory_rss_megabytes`. Under Ray, a job given GPUs sees only its own
(CUDA_VISIBLE_DEVICES); those are the GPUs it reports, under their node index (`gpu_0_...`, `gpu_3_...`).

A sample is taken every `interval` seconds and once when the job ends, so a job shorter than `interval` still has
one. A job that raises loses its samples (its run shows the error, not its load).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

import psutil

PREFIX = "system/"
DEFAULT_INTERVAL = 10.0  # seconds, as MLflow's own system-metrics monitor

Sample = tuple[float, dict[str, float]]  # (unix time, {name without the prefix: value})


def _gpu_monitor():
    """MLflow's GPU sampler when NVML finds a GPU, else None (no driver, no device, no nvidia-ml-py)."""
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

    logging.getLogger("mlflow.system_metrics.metrics.gpu_monitor").setLevel(logging.ERROR)
    try:
        return GPUMonitor()
    except (ImportError, RuntimeError):
        return None


def _visible_gpus() -> set[int] | None:
    """The NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES, which Ray sets per task), or None
    for all of them (unset, or given as UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    try:
        return {int(d) for d in visible.split(",") if d.strip()}
    except ValueError:
        return None


class _ProcessTree:
    """CPU and resident memory of this process and its children (data-loading workers), summed."""

    def __init__(self) -> None:
        self.root = psutil.Process()
        self.known: dict[int, psutil.Process] = {}
        self.sample()  # cpu_percent measures since the previous call of the same object: the first starts its clock

    def sample(self) -> dict[str, float]:
        cpu = rss = 0.0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            procs = [self.root]
        for proc in procs:
            proc = self.known.setdefault(proc.pid, proc)  # the same object: it remembers its previous CPU times
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except psutil.Error:  # it ended meanwhile
                self.known.pop(proc.pid, None)
        return {"process_cpu_utilization_percentage": round(cpu, 1), "process_memory_rss_megabytes": round(rss / 1e6, 1)}


class Sampler:
    """Samples this node (MLflow's CPU and GPU monitors) and this process tree until `stop`."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor

        if interval <= 0:
            raise ValueError(f"system metrics interval: expected seconds > 0, got {interval}")
        self.interval = interval
        self.samples: list[Sample] = []
        self.monitors = [CPUMonitor()] + [m for m in [_gpu_monitor()] if m is not None]
        self.gpus = _visible_gpus()
        self.tree: _ProcessTree | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tmx-system-metrics", daemon=True)

    def sample(self) -> Sample:
        values: dict[str, float] = {}
        for monitor in self.monitors:
            monitor.collect_metrics()
            values |= monitor.aggregate_metrics()  # the mean of one sample: the sample
            monitor.clear_metrics()
        if self.gpus is not None:
            values = {k: v for k, v in values.items() if not k.startswith("gpu_") or
                      int(k.split("_")[1]) in self.gpus}  # fmt: skip
        return time.time(), values | self.tree.sample()

    def _loop(self) -> None:
        # psutil measures the node's CPU since the previous call of the same thread: every call happens here
        psutil.cpu_percent(None)  # starts the clocks (the first call of each returns 0)
        self.tree = _ProcessTree()
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())
        self.samples.append(self.sample())  # at the end: a job shorter than the interval still has one

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop sampling, take the last sample, and return them all, oldest first."""
        self._stop.set()
        self._thread.join()
        return self.samples


@contextmanager
def sampling(interval: float = DEFAULT_INTERVAL) -> Iterator[list[Sample]]:
    """Inside, this node and process tree are sampled every `interval` seconds; the yielded list holds the samples
    once the block has ended (the last one taken at its end)."""
    samples: list[Sample] = []
    sampler = Sampler(interval).start()
    try:
        yield samples
    finally:
        samples.extend(sampler.stop())


class Sampled:
    """`fn(job, upstream, storage) -> JobResult` that also samples the system while it runs, into `result.system`.

        fn = Sampled(execute, interval=10.0)
    """

    def __init__(self, fn: Callable, interval: float = DEFAULT_INTERVAL) -> None:
        self.fn, self.interval = fn, interval

    def __call__(self, job, upstream, storage):
        with sampling(self.interval) as samples:
            result = self.fn(job, upstream, storage)
        result.system = samples
        result.ended = max(result.ended, samples[-1][0])  # the run spans its samples, the last one included
        return result
