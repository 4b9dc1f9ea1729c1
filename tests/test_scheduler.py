"""The scheduler on a real local Ray cluster: what each job kind asks Ray for is what Ray gives it."""

import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import ray.cloudpickle
from rich.console import Console

from matrix.results import JobResult
from matrix.store import Storage
from matrix.plan import plan
from matrix.scheduler import run_jobs
from matrix.spec import parse_study
from matrix.tracking import Tracker

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

STUDY = {"name": "res", "init": "scratch", "scratch": False, "tasks": ["segmentation"], "target_sizes": [8],
         "datasets": [{"name": "a", "domain": "driving", "train": 8, "val": 4},
                      {"name": "b", "domain": "aerial", "train": 8, "val": 4}],
         "resources": {"transfer": {"num_cpus": 2}}}  # fmt: skip


def sleeper(job, upstream, store) -> JobResult:
    """Stands in for training; reports in its metrics the CPUs Ray gave it and the jobs of its kind beside it.

    A source waits until the other source has started too: they meet only if Ray runs them side by side
    (waiting in vain fails the job). A transfer counts the transfers running when it starts and when it ends
    (marker files in the store), holding its CPUs a second in between.
    """
    import ray

    started, root = time.time(), Path(store.root)
    for folder in ("started", "running"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "started" / f"{job.kind}.{job.key}").touch()
    mine = root / "running" / f"{job.kind}.{job.key}"
    mine.touch()
    if job.kind == "source":
        deadline = time.monotonic() + 120  # not a measurement: how long to wait for a source Ray never starts
        while (beside := len(list((root / "started").glob("source.*"))) - 1) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the other source did not start while this one ran")
            time.sleep(0.05)
        time.sleep(3.0)  # long enough for the watcher to see the sources RUNNING
    else:
        beside = len(list((root / "running").glob(f"{job.kind}.*"))) - 1
        time.sleep(1.0)
        beside = max(beside, len(list((root / "running").glob(f"{job.kind}.*"))) - 1)
    mine.unlink()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    return JobResult(job.key, {"miou": 0.5, "beside": beside, "cpus": cpus}, "miou", True, checkpoint="none",
                     started=started, ended=time.time())  # fmt: skip


def test_a_kind_asking_for_two_cpus_runs_alone_on_a_two_cpu_cluster(tmp_path):
    study = parse_study(STUDY, "res.yaml")
    jobs = plan(study)
    assert [j.kind for j in jobs].count("transfer") == 2 and [j.kind for j in jobs].count("source") == 2
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "res", artifact_root=tmp_path / "art")
    resources = study.ray_resources()
    running, stop = set(), threading.Event()

    def watch() -> None:  # what `tmx status` reads while the study runs
        client = Tracker(tracker.uri, "res", create=False).client
        while not stop.is_set():
            query = "attributes.status = 'RUNNING' and tags.kind != 'study'"
            running.update(r.data.tags["kind"] for r in client.search_runs([tracker.experiment_id], query))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = run_jobs(jobs, tracker, Storage(tmp_path / "ck"), max_parallel=2, fn=sleeper,
                       resources=resources, console=Console(file=open(os.devnull, "w")))  # fmt: skip
    stop.set()
    watcher.join()
    assert sum(summary.finished.values()) == len(jobs) and not summary.failed
    # opened RUNNING from the workers' start messages while they ran (the sources, held 3 s: the driver reads
    # the messages at least once a second, so a 1 s job may start and end between two reads)
    assert "source" in running
    seen = {}  # kind -> [(CPUs, jobs of its kind running beside it), ...] from the run records
    for run in tracker.runs("FINISHED"):
        if run.data.tags.get("kind") in ("source", "transfer"):
            seen.setdefault(run.data.tags["kind"], []).append((run.data.metrics["cpus"], run.data.metrics["beside"]))
    assert seen["source"] == [(1.0, 1.0)] * 2  # one CPU each: the two sources ran side by side (they met)
    assert seen["transfer"] == [(2.0, 0.0)] * 2  # two CPUs each: the transfers, both ready at once, ran one at a time


def marking_sleeper(job, upstream, store) -> JobResult:
    """Like `sleeper`, and leaves a file per attempt naming the node it ran on."""
    import ray

    started = time.time()
    node = ray.get_runtime_context().get_node_id()
    (Path(store.root) / "attempts").mkdir(parents=True, exist_ok=True)
    (Path(store.root) / "attempts" / f"{job.key}.{node}").touch()
    time.sleep(3.0)
    return JobResult(job.key, {"miou": 0.5}, "miou", True, checkpoint="none", started=started, ended=time.time())


def test_a_node_removed_mid_study_its_jobs_finish_on_the_other(tmp_path):
    from ray.cluster_utils import Cluster

    study = parse_study({**STUDY, "name": "nodes", "resources": {}}, "nodes.yaml")
    jobs = plan(study)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    doomed = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "nodes", artifact_root=tmp_path / "art")
    store = Storage(tmp_path / "ck")
    attempts = Path(store.root) / "attempts"

    def remove_when_busy():
        deadline = time.time() + 120
        while time.time() < deadline:  # as soon as a job has started on the doomed node, take the node away
            if any(p.suffix == f".{doomed.node_id}" for p in attempts.glob("*")):
                cluster.remove_node(doomed)
                return
            time.sleep(0.1)

    remover = threading.Thread(target=remove_when_busy)
    remover.start()
    try:
        summary = run_jobs(jobs, tracker, store, address=cluster.address, fn=marking_sleeper,
                           console=Console(file=open(os.devnull, "w")))  # fmt: skip
    finally:
        remover.join()
        cluster.shutdown()
    assert not summary.failed and sum(summary.finished.values()) == len(jobs)
    nodes_per_job = Counter(p.stem for p in attempts.glob("*"))
    assert max(nodes_per_job.values()) >= 2  # a job cut off on the removed node ran again on the head
    finished = Counter(r.data.tags["job_key"] for r in tracker.runs("FINISHED") if "job_key" in r.data.tags)
    assert finished == Counter(j.key for j in jobs)  # every job exactly one FINISHED run
