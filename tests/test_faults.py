"""Fault tests with real processes: the driver or a worker is SIGKILLed mid-study, nothing is lost.

The durable state is the tracking store (a run is logged FINISHED only once
its job has ended) and the checkpoint store (written by rename), so a rerun
after any kill does only what is missing, and no job key ever gets two
FINISHED runs.
"""

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import TMX, run_tmx
from mlflow import MlflowClient

from matrix.plan import plan
from matrix.spec import load_study
from tasks.transfer import load_checkpoint

STUDY = """\
name: faults
image_size: 32
tasks: [segmentation]
datasets:
  - {name: a, domain: driving, train: 24, val: 8}
  - {name: b, domain: underwater, train: 24, val: 8}
target_sizes: [16]
pretrain: {train: 24, val: 8, schedule: {steps: 10, batch_size: 8}}
source: {steps: 25, batch_size: 8}
finetune: {steps: 10, batch_size: 8}
"""


def _finished_count(tmp_path: Path) -> int:
    """FINISHED job runs, read with plain read-only sqlite while a driver writes (no MLflow schema set-up race)."""
    db = tmp_path / "outputs" / "faults" / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE r.status = 'FINISHED' AND t.key = 'job_key'").fetchone()[0]  # fmt: skip
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _finished(tmp_path: Path) -> list:
    db = tmp_path / "outputs" / "faults" / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("faults")
    if exp is None:
        return []
    return list(client.search_runs([exp.experiment_id], "tags.kind != 'study' and attributes.status = 'FINISHED'",
                                   max_results=1000))  # fmt: skip


def _start(tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([TMX, "run", "faults.yaml"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _wait(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the driver ended before the point to kill it at"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _each_job_finished_once(tmp_path: Path) -> None:
    jobs = plan(load_study(tmp_path / "faults.yaml"))
    keys = Counter(r.data.tags["job_key"] for r in _finished(tmp_path))
    assert keys == Counter(j.key for j in jobs), "every job exactly one FINISHED run"


def test_driver_killed_at_several_points_loses_nothing(tmp_path):
    (tmp_path / "faults.yaml").write_text(STUDY)
    for point in (1, 3, 6):  # of 9 jobs: after the pretrain, mid-sources, mid-transfers
        proc = _start(tmp_path)
        _wait(lambda p=point: _finished_count(tmp_path) >= p, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rerun = run_tmx("run", "faults.yaml", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "0 failed, 0 skipped" in rerun.stdout
    _each_job_finished_once(tmp_path)
    store = tmp_path / "outputs" / "faults" / "checkpoints"
    assert not list(store.rglob("*.tmp")), "the rerun sweeps the temporary files of killed writers"
    for checkpoint in store.rglob("*.pt"):
        assert load_checkpoint(checkpoint)["state_dict"]  # complete: loads with weights_only=True


def _ray_workers_running(prefix: str) -> list[int]:
    """Ray workers titled `prefix...` of this test session's clusters (their RAY_TMPDIR is ours)."""
    ours = f"RAY_TMPDIR={os.environ['RAY_TMPDIR']}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                if title.startswith(prefix) and ours in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_worker_killed_mid_job_is_retried(tmp_path):
    (tmp_path / "faults.yaml").write_text(STUDY)
    proc = _start(tmp_path)
    _wait(lambda: bool(_ray_workers_running("ray::source")), proc)
    victims = _ray_workers_running("ray::source")
    os.kill(victims[0], signal.SIGKILL)
    assert proc.wait(timeout=600) == 0
    _each_job_finished_once(tmp_path)
