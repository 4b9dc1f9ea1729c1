"""End to end, as a user runs it: `tmx run` on real local Ray, a real sqlite MLflow store, `tmx report`."""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import TMX, free_port, run_tmx, tmx_modules
from mlflow import MlflowClient

from matrix.plan import plan
from matrix.spec import load_study

TINY = """\
name: tiny
image_size: 32
datasets:
  - {name: a, domain: driving, train: 24, val: 8}
  - {name: b, domain: underwater, train: 24, val: 8}
target_sizes: [16]
pretrain: {train: 24, val: 8, schedule: {steps: 4, batch_size: 8}}
source: {steps: 4, batch_size: 8}
finetune: {steps: 3, batch_size: 8}
"""
TAGS = ("study", "kind", "job_key", "source_dataset", "source_domain", "source_task", "target_dataset",
        "target_domain", "target_task", "target_size", "seed", "init")  # fmt: skip


def _env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "mpl").mkdir()
    # Ray's temp dir stays the session's short one (its socket paths must fit in 107 bytes)
    env = {"HOME": str(home), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    return env, home


def _runs(study_dir: Path, status: str | None = None) -> list:
    client = MlflowClient(f"sqlite:///{study_dir / 'outputs' / 'tiny' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    query = "tags.kind != 'study'" + (f" and attributes.status = '{status}'" if status else "")
    return list(client.search_runs([exp.experiment_id], query, max_results=1000)), client


def test_run_track_rerun_and_report(tmp_path):
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(TINY)
    env, home = _env(tmp_path)
    jobs = plan(load_study(study_file))
    assert len(jobs) == 29

    first = run_tmx("run", "tiny.yaml", "--max-parallel", "2", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Ran 29 jobs (0 were already done)" in first.stdout

    runs, client = _runs(tmp_path)
    assert len(runs) == 29 and all(r.info.status == "FINISHED" for r in runs)
    assert Counter(r.data.tags["job_key"] for r in runs) == Counter(j.key for j in jobs)  # one run per job
    by_key = {r.data.tags["job_key"]: r for r in runs}
    for job in jobs:
        run = by_key[job.key]
        tags = run.data.tags
        assert {t: tags[t] for t in job.tags("tiny")} == job.tags("tiny"), job.name
        assert set(TAGS) <= set(tags)
        primary = tags["primary_metric"]
        assert primary == {"segmentation": "miou", "depth": "abs_rel"}[job.task]
        assert run.data.metrics[primary] >= 0
        if job.kind != "reference":  # a trivial predictor is fitted, not trained
            assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 3
        if job.kind in ("pretrain", "source"):
            assert Path(tags["checkpoint"]).is_file()
        if job.upstream:
            dst = tmp_path / "artifacts" / run.info.run_id
            dst.mkdir(parents=True)
            moved = json.loads(Path(client.download_artifacts(run.info.run_id, "transfer.json", str(dst))).read_text())
            assert {name.split(".")[0] for name in moved["moved"]} == {"backbone", "neck"}  # heads stay
            assert all(name.startswith("head.") for name in moved["skipped"])
        dst = tmp_path / "ids" / run.info.run_id
        dst.mkdir(parents=True)
        ids = json.loads(Path(client.download_artifacts(run.info.run_id, "train_ids.json", str(dst))).read_text())
        assert len(ids["ids"]) == job.train.count and len(set(ids["ids"])) == job.train.count
        assert tags["train_ids_hash"] == hashlib.sha256("\n".join(ids["ids"]).encode()).hexdigest()[:16]
    # targets train on one seeded random subset of 16 of their 24 images, the same for every job onto them
    subsets = {by_key[j.key].data.tags["train_ids_hash"] for j in jobs if j.kind != "source" and j.train.dataset == "a"
               and j.task == "depth"}  # fmt: skip
    assert len(subsets) == 1
    transfer = next(j for j in jobs if j.kind == "transfer")
    assert by_key[transfer.key].data.tags["upstream_key"] == transfer.upstream

    # the light commands import no torch, timm or Ray (and MLflow only when they read runs)
    estimate, loaded = tmx_modules("plan", "tiny.yaml", cwd=tmp_path, env=env)
    assert estimate.returncode == 0 and "mean of 12 finished runs)" in estimate.stdout, estimate.stdout
    assert loaded == {"mlflow"}, loaded  # it reads the finished runs' durations

    second, loaded = tmx_modules("run", "tiny.yaml", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to run: all 29 jobs" in second.stdout and "No job launched" in second.stdout
    assert loaded == {"mlflow"}, loaded  # a finished study reruns without torch, and starts no Ray
    assert len(_runs(tmp_path)[0]) == 29
    status, loaded = tmx_modules("status", "tiny.yaml", cwd=tmp_path, env=env)
    assert status.returncode == 0 and loaded == {"mlflow"}, (status.stderr[-2000:], loaded)

    report, loaded = tmx_modules("report", "tiny.yaml", cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert loaded == {"mlflow"}, loaded
    assert "12 transfers with baselines" in report.stdout and "0 failed and 0 missing jobs" in report.stdout
    out = tmp_path / "outputs" / "tiny"
    html = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for title in ("Findings of Mensink et al.", "Factors of influence", "Transfer gain onto depth targets",
                  "Transfer gain onto segmentation targets", "Top three sources per target", "Failed jobs"):
        assert title in html and title in (out / "report.md").read_text()
    gains = pd.read_csv(out / "gains.csv")
    assert len(gains) == 12 and gains["gain"].notna().all()
    # 3 finetuning steps: most baselines lose to their trivial predictor, and the report says how many count
    counted = re.search(r"12 transfers with baselines \((\d+) counted; (\d+) targets left out", report.stdout)
    assert counted and int(counted[1]) == gains["included"].sum() == 12 - 3 * int(counted[2]), report.stdout
    row = gains.iloc[0]
    sign = 1 if row["higher_is_better"] else -1
    assert row["gain"] == pytest.approx(sign * (row["value"] - row["baseline"]) / abs(row["baseline"]))
    parent = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.kind = 'study'")
    assert len(parent) == 1
    logged = {a.path for a in client.list_artifacts(parent[0].info.run_id, "report")}
    assert "report/report.html" in logged and any(p.startswith("report/heatmap_") for p in logged)
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in runs)

    export = run_tmx("export", "tiny.yaml", "-o", "runs.parquet", cwd=tmp_path, env=env)
    assert export.returncode == 0 and "29 runs" in export.stdout
    exported = pd.read_parquet(tmp_path / "runs.parquet")
    assert len(exported) == 29 and set(exported["job_key"]) == {j.key for j in jobs}

    _check_ui_serves_the_study(tmp_path, env, n_runs=29)

    assert not list(home.iterdir()), f"left in the home directory: {list(home.rglob('*'))}"


def _check_ui_serves_the_study(tmp_path: Path, env: dict[str, str], n_runs: int) -> None:
    """`tmx ui` starts the MLflow UI on loopback, serving the study's runs."""
    port = free_port()
    proc = subprocess.Popen([TMX, "ui", "tiny.yaml", "--port", str(port)], cwd=tmp_path, env=os.environ | env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=tiny", timeout=5) as r:
                    exp = json.load(r)["experiment"]
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(1)
        body = json.dumps({"experiment_ids": [exp["experiment_id"]], "filter": "tags.kind != 'study'",
                           "max_results": 1000}).encode()  # fmt: skip
        req = urllib.request.Request(f"{base}/runs/search", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert len(json.load(r)["runs"]) == n_runs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_failing_jobs_are_recorded_and_their_dependants_skipped(tmp_path):
    # a learning rate this large makes every source's loss non-finite within a few steps
    (tmp_path / "tiny.yaml").write_text(TINY.replace("source: {steps: 4, batch_size: 8}",
                                                     "source: {steps: 4, batch_size: 8, lr: 1.0e+30}"))
    env, _ = _env(tmp_path)
    result = run_tmx("run", "tiny.yaml", "--in-process", cwd=tmp_path, env=env)  # the executor without Ray
    assert result.returncode == 1
    assert "4 failed, 12 skipped" in result.stdout
    assert "NonFiniteLossError: non-finite loss" in result.stdout
    runs, _ = _runs(tmp_path)
    kinds = Counter((r.data.tags["kind"], r.info.status) for r in runs)
    assert kinds == {("pretrain", "FINISHED"): 1, ("baseline", "FINISHED"): 4, ("scratch", "FINISHED"): 4,
                     ("reference", "FINISHED"): 4, ("source", "FAILED"): 4, ("transfer", "KILLED"): 12}  # fmt: skip
    assert all("NonFiniteLossError" in r.data.tags["error"] for r in runs if r.info.status == "FAILED")
    skipped = [r for r in runs if r.info.status == "KILLED"]  # recorded, with the failed source named
    assert all(r.data.tags["error"] == f"skipped: its upstream source {r.data.tags['source_dataset']}/"
               f"{r.data.tags['source_task']} failed" for r in skipped)  # fmt: skip

    status = run_tmx("status", "tiny.yaml", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    kinds = {row.pop("kind"): row for row in state["kinds"]}
    assert kinds["source"] == {"planned": 4, "done": 0, "running": 0, "failed": 4, "skipped": 0, "pending": 0}
    assert kinds["transfer"] == {"planned": 12, "done": 0, "running": 0, "failed": 0, "skipped": 12, "pending": 0}
    assert kinds["baseline"]["done"] == kinds["scratch"]["done"] == kinds["pretrain"]["done"] + 3 == 4
    assert Counter(f["state"] for f in state["failed"]) == {"failed": 4, "skipped": 12}
    assert all("NonFiniteLossError" in f["error"] for f in state["failed"] if f["state"] == "failed")
    table = run_tmx("status", "tiny.yaml", cwd=tmp_path, env=env)
    assert table.returncode == 0 and "failed: source a/segmentation" in table.stdout
    assert "3 jobs skipped: its upstream source a/segmentation failed" in table.stdout  # one line per upstream


def test_run_against_a_tracking_server(tmp_path, mlflow_server):
    """`--tracking-uri http://...`: a real `mlflow server` on 127.0.0.1 (conftest's `mlflow_server`)."""
    (tmp_path / "tiny.yaml").write_text(TINY + "tasks: [segmentation]\n")  # 11 jobs
    env, _ = _env(tmp_path)
    uri = mlflow_server
    result = run_tmx("run", "tiny.yaml", "--tracking-uri", uri, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 11 jobs" in result.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.kind != 'study' and attributes.status = 'FINISHED'",
                              max_results=1000)  # fmt: skip
    assert len(runs) == 11 and len({r.data.tags["job_key"] for r in runs}) == 11
    transfer = next(r for r in runs if r.data.tags["kind"] == "transfer")
    assert [a.path for a in client.list_artifacts(transfer.info.run_id)] == ["train_ids.json", "transfer.json"]
    assert not (tmp_path / "outputs" / "tiny" / "mlflow.db").exists()  # nothing went to the local default

    again = run_tmx("run", "tiny.yaml", "--tracking-uri", uri, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "No job launched" in again.stdout
    status = run_tmx("status", "tiny.yaml", "--tracking-uri", uri, "--json", cwd=tmp_path, env=env)
    assert json.loads(status.stdout)["kinds"][-1] == {"kind": "total", "planned": 11, "done": 11, "running": 0,
                                                      "failed": 0, "skipped": 0, "pending": 0}  # fmt: skip
    report = run_tmx("report", "tiny.yaml", "--tracking-uri", uri, cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "outputs" / "tiny" / "report.html").exists()
