"""The study in MLflow's UI, and no orphans: the parent run follows the driver (RUNNING, then FINISHED, FAILED or
KILLED), every job run says in words what it is, `tmx ui` prints the study's runs page, which headless Chromium
(Debian's) shows listing the job runs by name, and `tmx ui` or `tmx run` stopped by a signal leaves no server, no
cluster process and nothing listening behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CHROMEDRIVER, CHROMIUM, EIGHT_JOBS, NO_CHROMIUM, TMX, free_port, headless_chromium
from mlflow import MlflowClient
from rich.console import Console

from matrix.results import JobResult
from matrix.plan import plan
from matrix.scheduler import run_jobs
from matrix.spec import load_study, parse_study
from matrix.store import Storage
from matrix.tracking import Tracker, describe
from matrix.ui import runs_url

STUDY = EIGHT_JOBS.format(name="tiny", steps=3)
SAMPLED = ("--system-metrics", "--system-metrics-interval", "0.2")
SYSTEM = ("cpu_utilization_percentage", "system_memory_usage_megabytes", "system_memory_usage_percentage",
          "process_cpu_utilization_percentage", "process_memory_rss_megabytes")
QUIET = Console(file=open(os.devnull, "w"))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in "ZX":
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        try:
            found[p] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        todo += children.get(p, [])
    return found


def _alive(pids: dict[int, str]) -> dict[int, str]:
    return {p: cmd for p, cmd in pids.items() if (stat := _stat(p)) and stat[0] not in "ZX"}


def _gone_within(pids: dict[int, str], seconds: float) -> dict[int, str]:
    """Wait until none of `pids` lives; what still lives after `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _parent(db: Path) -> tuple[str, int, int | None] | None:
    """The study run's (status, start, end), read with plain read-only sqlite while a driver writes."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT r.status, r.start_time, r.end_time FROM runs r JOIN tags t ON "
                               "t.run_uuid = r.run_uuid WHERE t.key = 'kind' AND t.value = 'study'").fetchone()  # fmt: skip
    except sqlite3.OperationalError:  # tables not created yet
        return None


def _finished_jobs(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE r.status = 'FINISHED' AND t.key = 'job_key'").fetchone()[0]  # fmt: skip
    except sqlite3.OperationalError:
        return 0


def _runs(client: MlflowClient, exp_id: str, query: str) -> list:
    return list(client.search_runs([exp_id], query, max_results=1000))


def test_parent_run_follows_each_driver_session(tmp_path):
    """One parent run for the study: RUNNING while run_jobs runs (seen from a job, through another client), then
    FINISHED, FAILED (a job failed) or KILLED (SIGTERM), reopened by each rerun; a rerun with nothing to do leaves
    it alone. A job's run carries its description."""
    study = parse_study({"name": "ses", "init": "scratch", "tasks": ["segmentation"], "target_sizes": [8],
                         "datasets": [{"name": "a", "domain": "driving", "train": 8, "val": 4},
                                      {"name": "b", "domain": "aerial", "train": 8, "val": 4}]}, "ses.yaml")  # fmt: skip
    jobs = plan(study)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "ses", artifact_root=tmp_path / "art")
    client = MlflowClient(uri)  # another client, as `tmx status` or the UI read the store
    store = Storage(tmp_path / "ck")
    seen = []

    def train(job, upstream, store, fail=()):
        seen.append(client.get_run(tracker.parent_id).info.status)
        if job.kind in fail:
            raise ValueError("boom")
        started = time.time()
        time.sleep(0.01)
        return JobResult(job.key, {"miou": 0.5}, "miou", True, checkpoint="none", started=started, ended=time.time())

    def parent():
        [run] = _runs(client, tracker.experiment_id, "tags.kind = 'study'")
        assert run.info.run_id == tracker.parent_id
        return run

    failed = run_jobs(jobs, tracker, store, in_process=True, console=QUIET,
                      fn=lambda j, u, s: train(j, u, s, fail=("source",)))  # fmt: skip
    assert failed.failed and failed.skipped
    assert set(seen) == {"RUNNING"}
    first = parent()
    assert first.info.status == "FAILED" and "failed or were skipped" in first.data.tags["error"]

    def stopped(job, upstream, store):  # the driver receives SIGTERM while a job runs
        if job.kind == "transfer":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        return train(job, upstream, store)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, Tracker(uri, "ses"), store, in_process=True, console=QUIET, fn=stopped)
    assert signal.getsignal(signal.SIGTERM) == before  # the scheduler's handler was for its session only
    assert parent().info.status == "KILLED" and "interrupted" in parent().data.tags["error"]

    seen.clear()
    again = run_jobs(jobs, Tracker(uri, "ses"), store, in_process=True, console=QUIET, fn=train)
    assert not again.failed and set(seen) == {"RUNNING"}
    done = parent()
    assert done.info.status == "FINISHED" and "error" not in done.data.tags
    assert done.info.start_time == first.info.start_time  # the same run, reopened: it spans every session
    finished = _runs(client, tracker.experiment_id, "tags.kind != 'study' and attributes.status = 'FINISHED'")
    assert len(finished) == len(jobs)
    assert done.info.start_time <= min(r.info.start_time for r in finished)
    assert done.info.end_time >= max(r.info.end_time for r in finished)
    assert done.data.tags["mlflow.note.content"].startswith(f"Study ses: {len(jobs)} jobs")

    nothing = run_jobs(jobs, Tracker(uri, "ses"), store, in_process=True, console=QUIET, fn=train)
    assert nothing.ran == 0 and parent().info.end_time == done.info.end_time  # not stretched by a no-op

    by_key = {r.data.tags["job_key"]: r for r in finished}
    for job in jobs:
        assert by_key[job.key].data.tags["mlflow.note.content"] == describe(job)


def test_descriptions_say_what_each_job_is(write_study):
    study = load_study(write_study("""\
name: words
image_size: 32
tasks: [segmentation, depth]
datasets:
  - {name: city, domain: driving, train: 24, val: 8}
  - {name: reef, domain: underwater, train: 16, val: 8}
multi_sources:
  - {name: cityreef, datasets: {city: 3, reef: 1}}
target_sizes: [8]
"""))
    words = {(j.kind, j.train.dataset, j.task, f"{j.source.dataset}/{j.source.task}" if j.source else ""): describe(j)
             for j in plan(study)}  # fmt: skip
    assert words[("transfer", "reef", "depth", "city/segmentation")] == (
        "Finetunes the backbone of source city/segmentation (trained on 24 images of the driving domain) on 8 images "
        "of reef/depth (underwater), seed 0, and evaluates it on reef's val split.")  # fmt: skip
    multi = words[("source", "cityreef", "segmentation", "cityreef/segmentation")]
    assert "multi-source cityreef, 40 images drawn from city's 24 (driving, weight 75%) and reef's 16 (underwater, " \
           "weight 25%)" in multi and "evaluates it on the val splits of city and reef" in multi  # fmt: skip
    assert "trained on 40 images of city and reef, the driving and underwater domains" in \
        words[("transfer", "reef", "depth", "cityreef/segmentation")]  # fmt: skip
    assert words[("pretrain", "words-pretrain", "segmentation", "")].startswith("Pretrains the study's generic backbone")
    assert "baseline every transfer onto this target is compared with" in words[("baseline", "city", "depth", "")]
    assert "randomly initialised" in words[("scratch", "city", "depth", "")]
    assert "median training depth" in words[("reference", "city", "depth", "")]
    assert "majority training class" in words[("reference", "city", "segmentation", "")]


def _start_ui(cwd: Path, port: int, log: Path) -> subprocess.Popen:
    # the tmx process only is signalled (not a group): it must stop the server it started itself. It starts with
    # the default handlers, as from a terminal: a pytest-xdist worker ignores SIGINT, and an ignored signal is
    # inherited (and kept ignored by tmx, as under `nohup`)
    return subprocess.Popen([TMX, "ui", "tiny.yaml", "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True, preexec_fn=_default_signals)  # fmt: skip


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _url(proc: subprocess.Popen, log: Path) -> str:
    for line in proc.stdout:  # blocks until the server answers and tmx prints the runs page
        if found := re.search(r"http://\S+", line):
            return found[0]
    raise AssertionError(f"tmx ui printed no URL: {log.read_text()[-3000:]}")


def _stop_a_run_on_ray_with_sigterm(tmp_path: Path, db: Path) -> None:
    """`tmx run` on its embedded Ray cluster, sent SIGTERM once a job has finished: it says it was interrupted
    (exit 130), the parent run ends KILLED, and no process of the cluster is left."""
    driver = subprocess.Popen([TMX, "run", "tiny.yaml", "--max-parallel", "2", *SAMPLED], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ((parent := _parent(db)) and parent[0] == "RUNNING" and _finished_jobs(db) >= 1):
            assert driver.poll() is None, driver.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the study did not start"
            time.sleep(0.2)
        cluster = _descendants(driver.pid)
        assert any("raylet" in cmd for cmd in cluster.values()), cluster
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130 and "tmx: interrupted" in err, err[-3000:]
    assert not _gone_within(cluster, 30), "the embedded Ray cluster outlived `tmx run`"
    status, start, end = _parent(db)
    assert status == "KILLED" and end >= start


def test_the_study_in_the_ui_and_nothing_left_behind(tmp_path):
    """A run stopped by SIGTERM, then finished by a rerun under the same parent run; meanwhile four `tmx ui`, each
    stopped by another signal; the runs page they print lists the job runs by name in headless Chromium, and a job
    run's page charts the system metrics both drivers sampled (`--system-metrics`: on Ray's workers, in-process)."""
    (tmp_path / "tiny.yaml").write_text(STUDY)
    jobs = plan(load_study(tmp_path / "tiny.yaml"))
    db = tmp_path / "outputs" / "tiny" / "mlflow.db"
    _stop_a_run_on_ray_with_sigterm(tmp_path, db)

    driver = subprocess.Popen([TMX, "run", "tiny.yaml", "--in-process", *SAMPLED], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    # the UIs start while the rerun runs; SIGKILL too: no handler sees it, but the kernel then sends the server
    # SIGTERM (PR_SET_PDEATHSIG)
    ports = {sig: free_port() for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGKILL, signal.SIGTERM)}
    uis = {sig: _start_ui(tmp_path, port, tmp_path / f"ui-{sig.name}.log") for sig, port in ports.items()}
    try:
        states = []
        while driver.poll() is None:  # the parent run, seen from another process while the driver runs
            if (parent := _parent(db)) and parent[0] not in states[-1:]:
                states.append(parent[0])
            time.sleep(0.2)
        assert driver.returncode == 0, driver.stdout.read()[-3000:]
        assert "RUNNING" in states, states  # KILLED (the stopped run), RUNNING, FINISHED once the driver ends
        assert states[states.index("RUNNING"):] in (["RUNNING"], ["RUNNING", "FINISHED"]), states
        client = MlflowClient(f"sqlite:///{db}")
        exp = client.get_experiment_by_name("tiny")
        [parent] = _runs(client, exp.experiment_id, "tags.kind = 'study'")
        runs = _runs(client, exp.experiment_id, "tags.kind != 'study'")  # and the KILLED ones of the stopped run
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert len(finished) == len(jobs) and parent.info.status == "FINISHED"
        assert parent.info.start_time <= min(r.info.start_time for r in runs)  # it spans both drivers
        assert parent.info.end_time >= max(r.info.end_time for r in finished)
        assert {r.data.tags["mlflow.note.content"] for r in finished} == {describe(j) for j in jobs}
        # both drivers sampled each job's system (on Ray's workers, then in-process): node and process metrics in
        # MLflow's system/ names, taken while the job ran; the worker's process has loaded torch
        for run in finished:
            for name in SYSTEM:
                history = client.get_metric_history(run.info.run_id, f"system/{name}")
                assert history, (run.data.tags["mlflow.runName"], name)
                assert sorted(m.step for m in history) == list(range(len(history)))
                assert all(run.info.start_time - 1000 <= m.timestamp <= run.info.end_time for m in history)
            assert max(m.value for m in client.get_metric_history(run.info.run_id, "system/process_memory_rss_megabytes")) > 150

        urls = {sig: _url(proc, tmp_path / f"ui-{sig.name}.log") for sig, proc in uis.items()}
        for sig, url in urls.items():
            assert url == runs_url(f"http://127.0.0.1:{ports[sig]}", exp.experiment_id)
            assert "/#/experiments/" in url and _listening(ports[sig])
        servers = {sig: _descendants(proc.pid) for sig, proc in uis.items()}
        assert all(any("mlflow" in cmd for cmd in s.values()) for s in servers.values()), servers

        def stop(sig):
            uis[sig].send_signal(sig)  # to tmx alone
            assert uis[sig].wait(timeout=30) == (-sig if sig == signal.SIGKILL else 128 + sig)
            left = _gone_within(servers[sig], 20)
            assert not left, f"{sig.name}: left running: {left}"
            assert not _listening(ports[sig]), f"{sig.name}: something still listens on {ports[sig]}"

        stop(signal.SIGINT)
        stop(signal.SIGHUP)
        stop(signal.SIGKILL)
        browsed = False
        if CHROMIUM and CHROMEDRIVER:
            browser = headless_chromium(tmp_path / "chromium")
            try:
                browser.get(urls[signal.SIGTERM])
                names = {j.name for j in jobs}
                deadline, shown = time.monotonic() + 90, set()
                while not names <= shown and time.monotonic() < deadline:  # the table fills in after its fetch
                    shown = set(browser.execute_script(
                        "return Array.from(document.querySelectorAll('a')).map(a => a.textContent.trim());"))  # fmt: skip
                    time.sleep(0.5)
                browser.save_screenshot(str(tmp_path / "runs.png"))
                assert names <= shown, f"not listed: {sorted(names - shown)}"
                assert "Sort: Run Name" in browser.find_element("tag name", "body").text
                # a job's system metrics (`--system-metrics`) are charted on its run's System metrics tab
                [run] = [r for r in finished if r.data.tags["kind"] == "transfer"][:1]
                browser.get(urls[signal.SIGTERM].split("/runs?")[0] + f"/runs/{run.info.run_id}/system-metrics")
                charts = ("cpu_utilization_percentage", "system_memory_usage_megabytes", "process_memory_rss_megabytes")
                deadline, text = time.monotonic() + 60, ""
                while not all(c in text for c in charts) and time.monotonic() < deadline:
                    text = browser.find_element("tag name", "body").text
                    time.sleep(0.5)
                browser.save_screenshot(str(tmp_path / "system-metrics.png"))
                assert re.search(r"System metrics\s*\(5\)", text) and all(c in text for c in charts), text[:2000]
                browsed = True
            finally:
                browser.quit()
        stop(signal.SIGTERM)
    finally:
        for proc in (driver, *uis.values()):
            if proc.poll() is None:
                proc.kill()
    if not browsed:
        pytest.skip(f"the runs page was not opened: {NO_CHROMIUM}; the signal checks passed")
