"""Per-job system metrics (`tmx run --system-metrics`): sampled in the worker, logged by the driver under MLflow's
`system/...` names, on the job's own run."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import psutil
from conftest import EIGHT_JOBS, run_tmx
from mlflow.tracking import MlflowClient

from matrix.results import JobResult
from matrix.plan import plan
from matrix.spec import parse_study
from matrix.system_metrics import sampling
from matrix.tracking import Tracker

STUDY = EIGHT_JOBS.format(name="sysm", steps=6)
NODE = ("cpu_utilization_percentage", "system_memory_usage_megabytes", "system_memory_usage_percentage")
PROCESS = ("process_cpu_utilization_percentage", "process_memory_rss_megabytes")


def test_the_job_process_tree_is_sampled():
    """A child that holds 300 MB and keeps a core busy shows in the samples of the process that started it: its
    memory and CPU count as the job's (a DataLoader's workers are such children); the node's figures are
    psutil's. The CPU the samples add up to is what the kernel accounts the processes, less what the child spent
    before its first sample and after its last (it was gone by the final one)."""
    hog = "x = bytearray(300_000_000); import time; t = time.time()\nwhile time.time() - t < 3: pass"
    before = psutil.Process().memory_info().rss / 1e6
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    started = time.time()
    with sampling(interval=0.5) as samples:
        subprocess.run([sys.executable, "-c", hog], check=True)
    cpu = sum(after.ru_utime + after.ru_stime - (b.ru_utime + b.ru_stime) for b, after in
              zip(used, [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]))  # fmt: skip
    assert len(samples) >= 4  # every 0.5 s for ~3 s, and one at the end
    times = [started] + [t for t, _ in samples]
    assert times == sorted(times)
    for _, values in samples:
        assert set(values) >= set(NODE + PROCESS)
        assert 0 <= values["cpu_utilization_percentage"] <= 100
        assert 0 < values["system_memory_usage_megabytes"] <= psutil.virtual_memory().total / 1e6
    peak = max(v["process_memory_rss_megabytes"] for _, v in samples)
    assert peak > before + 250, (before, peak)
    sampled = sum(v["process_cpu_utilization_percentage"] / 100 * (t - t0)
                  for t0, (t, v) in zip(times, samples))  # fmt: skip
    # a process is measured from its first sample on: the child's CPU before it was first seen (up to one
    # interval) and after its last sample (up to one more) is not in the samples
    assert cpu - 2 * 0.5 - 0.2 <= sampled <= cpu * 1.1 + 0.1, (sampled, cpu)
    assert sampled > 0.3, sampled  # the child spun for 3 s


def test_samples_are_logged_in_batches_on_the_job_run(tmp_path):
    """1,000 samples of 5 metrics: 5,000 metrics, more than one MLflow batch takes; all reach the run, each as a
    step of its `system/...` history at the sample's time. A job without samples gets no system metric."""
    study = parse_study({"name": "sysb", "init": "scratch", "tasks": ["segmentation"], "target_sizes": [8],
                         "datasets": [{"name": "a", "domain": "driving", "train": 16, "val": 8}],
                         "source": {"steps": 1}, "finetune": {"steps": 1}}, tmp_path / "sysb.yaml")  # fmt: skip
    jobs = plan(study)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "sysb", artifact_root=tmp_path / "art")
    t0 = time.time() - 2000
    samples = [(t0 + i, {"cpu_utilization_percentage": float(i % 100), "process_memory_rss_megabytes": 100.0 + i,
                         "gpu_0_utilization_percentage": 50.0, "gpu_0_memory_usage_megabytes": 1.0,
                         "system_memory_usage_megabytes": 2.0}) for i in range(1000)]  # fmt: skip
    result = JobResult(jobs[0].key, {"miou": 0.5}, "miou", True, started=t0, ended=time.time(), system=samples)
    plain = JobResult(jobs[1].key, {"miou": 0.5}, "miou", True, started=t0, ended=time.time())
    with tracker.session(jobs):
        run_id = tracker.record(jobs[0], result)
        plain_id = tracker.record(jobs[1], plain)
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "system/process_memory_rss_megabytes")
    assert sorted((m.step, m.value, m.timestamp) for m in history) == \
        [(i, 100.0 + i, int((t0 + i) * 1000)) for i in range(1000)]  # fmt: skip
    assert len(client.get_metric_history(run_id, "system/gpu_0_utilization_percentage")) == 1000
    assert client.get_run(run_id).data.metrics["miou"] == 0.5
    assert not [k for k in client.get_run(plain_id).data.metrics if k.startswith("system/")]


def test_a_bad_interval_is_a_usage_error(tmp_path):
    """`tmx run --system-metrics-interval 0` exits 2 naming the option and starts nothing. (tests/test_ui.py runs
    a study with --system-metrics, on Ray and in-process, and checks every job's samples.)"""
    (tmp_path / "sysm.yaml").write_text(STUDY)
    bad = run_tmx("run", "sysm.yaml", "--system-metrics", "--system-metrics-interval", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--system-metrics-interval" in bad.stderr
    assert not (tmp_path / "outputs").exists()


def test_submit_forwards_system_metrics_to_the_clusters_driver(tmp_path):
    """`tmx submit --system-metrics` starts `tmx run ... --system-metrics` on the head, which `tmx run` parses."""
    import shlex

    from matrix.cli import run
    from matrix.submit import job_request

    (tmp_path / "sysm.yaml").write_text(STUDY)
    request = job_request(tmp_path / "sysm.yaml", "http://mlflow:5000", None, system_metrics=2.5)
    args = shlex.split(request.entrypoint)
    assert args[:2] == ["tmx", "run"] and args[-3:] == ["--system-metrics", "--system-metrics-interval", "2.5"]
    ctx = run.make_context("run", args[2:])
    assert ctx.params["system_metrics"] is True and ctx.params["system_metrics_interval"] == 2.5
    assert "--system-metrics" not in job_request(tmp_path / "sysm.yaml", "http://mlflow:5000", None).entrypoint
