"""The study lease (matrix/lease.py) with real processes: one driver at a time runs a study.

Two `tmx run` of a brand-new study at once, on a sqlite store and on a real `mlflow server` on loopback: one runs
it, the other exits 2 with one line naming the holder, and every job ends with exactly one FINISHED run. A driver
SIGKILLed mid-study is taken over by the next run without a flag; a lease whose heartbeat stopped on another machine
lapses after the lease timeout; `--force` takes a live lease and the driver holding it stops.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FOUR_JOBS, TMX
from mlflow import MlflowClient

from matrix.cli import main
from matrix.lease import LeaseHeld, take_lease
from matrix.plan import plan
from matrix.spec import load_study

STUDY = FOUR_JOBS.format(name="lease")
HOST = socket.gethostname()


def _folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "lease.yaml").write_text(STUDY)
    (tmp_path / "home").mkdir()
    (tmp_path / "mpl").mkdir()
    return tmp_path, {"HOME": str(tmp_path / "home"), "MPLCONFIGDIR": str(tmp_path / "mpl")}


def _sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'outputs' / 'lease' / 'mlflow.db'}"


def _start(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([TMX, "run", "lease.yaml", *args], cwd=folder, env=os.environ | env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _runs(uri: str, query: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lease")
    return [] if exp is None else list(client.search_runs([exp.experiment_id], query, max_results=1000))


def _each_job_finished_once(folder: Path, uri: str) -> None:
    finished = _runs(uri, "attributes.status = 'FINISHED' and tags.kind != 'study'")
    keys = Counter(r.data.tags["job_key"] for r in finished)
    assert keys == Counter(j.key for j in plan(load_study(folder / "lease.yaml"))), "one FINISHED run per job key"
    assert not _runs(uri, "tags.kind = 'lease'"), "drivers delete their lease runs when they end"


def _refused_by(result: tuple[int, str], holder_pid: int) -> None:
    """Exit 2, no traceback, one line (after MLflow's own log lines) naming the holder's host, pid and since."""
    status, stderr = result
    assert status == 2 and "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("tmx: ")]
    assert len(lines) == 1 and stderr.rstrip().endswith(lines[0]), stderr[-3000:]
    assert f"tmx: study 'lease' is already being run by host {HOST}, pid {holder_pid}, since 20" in lines[0]
    assert "--force" in lines[0]


def _race(folder: Path, env: dict[str, str], *args: str) -> None:
    """Two drivers of the same study started at once: one runs it, the other is refused."""
    drivers = [_start(folder, env, *args) for _ in range(2)]
    out = [p.communicate(timeout=300) for p in drivers]
    status = [p.returncode for p in drivers]
    assert sorted(status) == [0, 2], [(s, o[1][-2000:]) for s, o in zip(status, out)]
    winner = status.index(0)
    assert "Ran 4 jobs (0 were already done)" in out[winner][0]
    _refused_by((status[1 - winner], out[1 - winner][1]), drivers[winner].pid)


def test_two_drivers_on_a_new_sqlite_study(tmp_path):
    """On Ray (the store is created while Ray starts): MLflow's schema is created once, the study once."""
    folder, env = _folder(tmp_path)
    _race(folder, env, "--max-parallel", "1")
    _each_job_finished_once(folder, _sqlite(folder))
    parents = _runs(_sqlite(folder), "tags.kind = 'study'")
    assert len(parents) == 1, "the loser touched nothing: one parent run"


def test_two_drivers_on_a_tracking_server(tmp_path, mlflow_server):
    folder, env = _folder(tmp_path)
    _race(folder, env, "--in-process", "--tracking-uri", mlflow_server)
    _each_job_finished_once(folder, mlflow_server)


def _wait(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the driver ended too soon: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _finished_jobs(folder: Path) -> int:
    """FINISHED job runs, read with plain read-only sqlite while a driver writes."""
    db = folder / "outputs" / "lease" / "mlflow.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE r.status = 'FINISHED' AND t.key = 'job_key'").fetchone()[0]  # fmt: skip
    except sqlite3.OperationalError:  # no store or no tables yet
        return 0


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One sqlite store for the tests below (MLflow's schema takes seconds to create); each uses its own study."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_a_stopped_heartbeat_lapses_after_the_timeout(store, monkeypatch):
    """A driver on another machine (its pid means nothing here): its lease is live while its heartbeat goes on, and
    taken over once the heartbeat has stopped for the lease timeout."""
    monkeypatch.setenv("TMX_LEASE_TIMEOUT", "2.5")
    monkeypatch.setenv("TMX_LEASE_HEARTBEAT", "0.5")
    take_lease(store, "lapse").release()  # creates the study's experiment
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("lapse").experiment_id
    tags = {"kind": "lease", "host": "elsewhere", "pid": "4321", "since": "2030-01-01 00:00:00 UTC", "ticket": "1"}
    elsewhere = client.create_run(exp, tags=tags | {"heartbeat": f"{time.time():.3f}"}).info.run_id
    for _ in range(6):  # 3 s of heartbeats, longer than the timeout
        with pytest.raises(LeaseHeld, match="is already being run by host elsewhere, pid 4321, since 2030-01-01"):
            take_lease(store, "lapse")
        time.sleep(0.5)
        client.set_tag(elsewhere, "heartbeat", f"{time.time():.3f}")
    time.sleep(3)  # the heartbeat stops
    said = []
    lease = take_lease(store, "lapse", echo=said.append)
    try:
        assert len(said) == 1, said
        assert said[0].startswith("took over the lease of study 'lapse' from host elsewhere, pid 4321, since "
                                  "2030-01-01 00:00:00 UTC: no heartbeat for")  # fmt: skip
        ended = client.get_run(elsewhere)
        assert ended.info.status == "KILLED" and ended.info.lifecycle_stage == "deleted"
        assert "no heartbeat for" in ended.data.tags["ended_by"]
    finally:
        lease.release()


def _no_write_lock(db: Path) -> bool:
    """True when no process holds the sqlite store's write lock (a frozen writer would block the others)."""
    with sqlite3.connect(db, timeout=0) as con:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        con.rollback()
        return True


def _freeze(proc: subprocess.Popen, db: Path) -> None:
    """SIGSTOP `proc` at a moment it holds no write lock on the sqlite store (else it would block the others)."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        if _no_write_lock(db):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)


def _lease_runs(uri: str) -> list:
    return _runs(uri, "tags.kind = 'lease' and attributes.status = 'RUNNING'")


def test_a_killed_driver_is_taken_over_and_force_takes_a_live_lease(tmp_path):
    """One study through three drivers (one study keeps the file light). The first is SIGKILLed mid-study: the next
    run takes its lease over at once, without a flag (its process is known to be gone on this machine; a driver
    elsewhere lapses with its heartbeat, test_a_stopped_heartbeat_lapses_after_the_timeout). That one is frozen
    mid-study, its lease live: `--force` takes the lease, and the frozen driver, resumed, finds it taken and stops
    before the forcing one goes on, which finishes the study."""
    folder, env = _folder(tmp_path)
    env |= {"TMX_LEASE_TIMEOUT": "60", "TMX_LEASE_HEARTBEAT": "0.5"}  # taking over a killed driver waits for none
    uri, db = _sqlite(folder), folder / "outputs" / "lease" / "mlflow.db"
    killed = _start(folder, env, "--in-process")
    _wait(lambda: _finished_jobs(folder) >= 1, killed)
    killed.kill()  # its lease run stays RUNNING, its heartbeat stops
    killed.communicate()
    (stale,) = _lease_runs(uri)

    taker = _start(folder, env, "--in-process")
    _wait(lambda: _finished_jobs(folder) >= 2, taker)
    _freeze(taker, db)  # mid-study, so that it surely runs when --force comes
    (live,) = _lease_runs(uri)
    assert live.data.tags["pid"] == str(taker.pid) and live.data.tags["host"] == HOST
    ended = MlflowClient(uri).get_run(stale.info.run_id)
    assert ended.info.lifecycle_stage == "deleted" and "its process is gone" in ended.data.tags["ended_by"]

    forcing = _start(folder, env, "--in-process", "--force")
    _wait(lambda: live.info.run_id not in {r.info.run_id for r in _lease_runs(uri)}, forcing)  # it took it
    taker.send_signal(signal.SIGCONT)  # it finds its lease run ended, stops and says so; the other then goes on
    out, err = forcing.communicate(timeout=300)
    assert forcing.returncode == 0, err[-3000:]
    assert f"--force: took the lease of study 'lease' from host {HOST}, pid {taker.pid}, since 20" in err
    _, taker_err = taker.communicate(timeout=60)
    assert taker.returncode == 2 and "Traceback" not in taker_err, taker_err[-3000:]
    assert f"tmx: took over the lease of study 'lease' from host {HOST}, pid {killed.pid}, since 20" in taker_err
    assert "its process is gone" in taker_err
    assert taker_err.rstrip().splitlines()[-1] == (
        f"tmx: study 'lease' was taken over by host {HOST}, pid {forcing.pid} (with --force); this driver stopped "
        f"(the jobs it finished are recorded in {uri})")  # fmt: skip
    _each_job_finished_once(folder, uri)


def test_concurrent_takers_one_wins(store, monkeypatch):
    """Six drivers' worth of `take_lease` at once on a new study (threads: its experiment is created once, and the
    bakery settles who holds the lease)."""
    monkeypatch.setenv("TMX_LEASE_TIMEOUT", "30")
    monkeypatch.setenv("TMX_LEASE_HEARTBEAT", "5")
    won, lost = [], []

    def take() -> None:
        try:
            won.append(take_lease(store, "race"))
        except LeaseHeld as e:
            lost.append(e)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 5
    # each loser names the contender it found ahead of it when it gave up: with several at once, that may be one
    # that lost in turn to the winner; it always names a host and a process
    assert all(e.holder.host and e.holder.pid for e in lost)
    client = MlflowClient(store)
    (exp,) = [e for e in client.search_experiments() if e.name == "race"]
    leases = client.search_runs([exp.experiment_id], "tags.kind = 'lease'")
    assert [r.info.run_id for r in leases] == [won[0].run_id]  # the losers' are deleted
    won[0].release()
    assert not client.search_runs([exp.experiment_id], "tags.kind = 'lease'")


def test_submit_refuses_a_study_a_live_driver_runs(store, tmp_path, monkeypatch):
    """`tmx submit` checks the lease once the cluster answers, before sending the job; --force sends it on."""
    (tmp_path / "lease.yaml").write_text(STUDY.replace("name: lease", "name: submitted"))
    lease = take_lease(store, "submitted")  # a live driver: this process
    sent = []

    class Jobs:  # the Jobs API's client, as far as submit uses it
        def submit_job(self, **kwargs):
            sent.append(kwargs)
            return "tmx-lease-1"

    monkeypatch.setattr("matrix.submit.connect", lambda address: Jobs())
    args = ["submit", str(tmp_path / "lease.yaml"), "--address", "http://127.0.0.1:8265", "--tracking-uri", store]
    try:
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code == 2 and not sent, refused.output
        line = refused.stderr.strip()
        assert "\n" not in line and f"is already being run by host {HOST}, pid {os.getpid()}" in line
        forced = CliRunner().invoke(main, [*args, "--force"])
        assert forced.exit_code == 0, forced.output
        assert sent[0]["entrypoint"] == "tmx run lease.yaml --address auto --force"
    finally:
        lease.release()
