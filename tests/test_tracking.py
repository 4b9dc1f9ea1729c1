"""Tracker and status against a real sqlite MLflow store: RUNNING while a worker runs a job, KILLED when the
driver that started it is gone, one run per job whichever way it ends."""

import time

from matrix.results import JobResult
from matrix.plan import plan
from matrix.spec import parse_study
from matrix.status import study_status
from matrix.tracking import Tracker

STUDY = {"name": "trk", "image_size": 32, "tasks": ["segmentation"], "target_sizes": [8],
         "datasets": [{"name": "a", "domain": "driving", "train": 8, "val": 4},
                      {"name": "b", "domain": "aerial", "train": 8, "val": 4}]}  # fmt: skip


def _status(tracker, jobs):
    runs = [(r.data.tags["job_key"], r.info.status, r.data.tags.get("error"), r.info.start_time)
            for r in tracker.runs(status=None) if r.data.tags.get("kind") != "study"]  # fmt: skip
    return {row["kind"]: row for row in study_status(jobs, runs)[0]}, runs


def test_running_killed_and_finished_runs(tmp_path):
    jobs = plan(parse_study(STUDY, "trk.yaml"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = Tracker(uri, "trk", artifact_root=tmp_path / "art")
    pretrain, source = jobs[0], jobs[1]
    driver.start(pretrain, time.time())
    driver.start(source, time.time())
    driver.start(source, time.time())  # a retried job reports its start again: still one run
    rows, runs = _status(driver, jobs)
    assert rows["pretrain"]["running"] == 1 and rows["source"]["running"] == 1 and len(runs) == 2
    now = time.time()
    driver.record(pretrain, JobResult(pretrain.key, {"miou": 0.5}, "miou", True, started=now, ended=now + 1))
    driver.record_failure(source, "ValueError: boom", now, now + 1)
    rows, runs = _status(driver, jobs)
    assert rows["pretrain"]["done"] == 1 and rows["source"]["failed"] == 1 and len(runs) == 2
    assert rows["total"]["running"] == 0

    other = jobs[2]
    driver.start(other, time.time())  # then the driver is killed: its run stays RUNNING ...
    restarted = Tracker(uri, "trk")
    assert restarted.close_stale() == 1  # ... until the next driver marks it KILLED
    rows, runs = _status(restarted, jobs)
    killed = [r for r in restarted.runs(status="KILLED")]
    assert len(killed) == 1 and killed[0].data.tags["job_key"] == other.key
    assert "interrupted" in killed[0].data.tags["error"]
    assert rows[other.kind]["running"] == 0 and rows[other.kind]["pending"] >= 1
    assert [r.data.tags.get("job_key") for r in restarted.runs("FINISHED") if "job_key" in r.data.tags] == [pretrain.key]


def test_the_experiment_is_tagged_as_model_training(tmp_path):
    """MLflow 3.17's UI opens an experiment with this tag on its runs table, not on the GenAI overview."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, "trk", artifact_root=tmp_path / "art")
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("trk").tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment("old")  # a study created before the tag gets it when next opened
    Tracker(uri, "old")
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
