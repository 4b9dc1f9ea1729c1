"""The scheduler on a real local Ray cluster: what each job kind asks Ray for is what Ray gives it."""

import os
import sys
import time

import ray.cloudpickle
from rich.console import Console

from matrix.jobs import CheckpointStore, JobResult
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
    """Stands in for training: holds its CPUs for a while and reports when it ran."""
    started = time.time()
    time.sleep(4.0 if job.kind == "source" else 1.0)  # long enough for a cold worker to start beside it
    return JobResult(job.key, {"miou": 0.5}, "miou", True, checkpoint="none", started=started, ended=time.time())


def test_a_kind_asking_for_two_cpus_runs_alone_on_a_two_cpu_cluster(tmp_path):
    study = parse_study(STUDY, "res.yaml")
    jobs = plan(study)
    assert [j.kind for j in jobs].count("transfer") == 2 and [j.kind for j in jobs].count("source") == 2
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "res", artifact_root=tmp_path / "art")
    resources = {kind: r.model_dump() for kind, r in study.resources.items()}
    summary = run_jobs(jobs, tracker, CheckpointStore(tmp_path / "ck"), max_parallel=2, fn=sleeper,
                       resources=resources, console=Console(file=open(os.devnull, "w")))  # fmt: skip
    assert sum(summary.finished.values()) == len(jobs) and not summary.failed
    spans = {}
    for run in tracker.runs("FINISHED"):
        if run.data.tags.get("kind") in ("source", "transfer"):
            spans.setdefault(run.data.tags["kind"], []).append((run.info.start_time, run.info.end_time))
    (s1, e1), (s2, e2) = sorted(spans["source"])
    assert s2 < e1  # one CPU each: the two sources ran side by side
    (s1, e1), (s2, e2) = sorted(spans["transfer"])
    assert e1 <= s2  # two CPUs each: the transfers, both ready at once, ran one after the other
