"""MLflow tracking: one experiment per study, one run per job. The only module that imports mlflow.

A job's run carries the tags of `Job.tags` (study, kind, job_key, source_*,
target_*, target_size, seed, init), the primary metric's name and direction,
the job's metrics (and its training curve as `train_loss` by step), the
checkpoint path of jobs that others build on, and the ids of the images it
trained on (artifact `train_ids.json`, and their hash in tag `train_ids_hash`). A job whose key has a FINISHED
run is done; the scheduler never runs it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from matrix.jobs import JobResult
from matrix.plan import Job

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def default_tracking_uri(out: Path) -> str:
    """The study's own sqlite store: OUT/mlflow.db."""
    return f"sqlite:///{(out / 'mlflow.db').resolve()}"


def _write_ahead_log(path: str) -> None:
    """Put the sqlite store in write-ahead-log mode (it stays so): readers (`tmx status`, `tmx ui`, `tmx report`)
    never block the driver's writes, nor it theirs. The store must then be on a local disk (a cluster uses an MLflow
    server instead)."""
    import sqlite3

    with closing(sqlite3.connect(path, timeout=30)) as db:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")


def _ms(t: float) -> int:
    return int(t * 1000)


# MLflow 3.17's UI opens an experiment of this kind on its runs table (not on the GenAI overview)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class Tracker:
    def __init__(self, uri: str, study: str, artifact_root: Path | None = None, create: bool = True) -> None:
        """Open (and unless `create` is False, create) the study's experiment and parent run."""
        from mlflow import MlflowClient

        self.uri, self.study = uri, study
        self._open: dict[str, str] = {}  # job key -> its RUNNING run
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(study)  # creates a new store's tables
        if uri.startswith("sqlite:///"):
            _write_ahead_log(uri.removeprefix("sqlite:///"))
        if exp is None and not create:  # read-only use (plan, status) of a study with no runs yet
            self.experiment_id = self.parent_id = self._local_artifacts = None
            return
        if exp is None:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            exp = self.client.get_experiment(self.client.create_experiment(study, artifact_location=location,
                                                                           tags=EXPERIMENT_TAGS))  # fmt: skip
        elif any(exp.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):  # a study created before the tag
            for k, v in EXPERIMENT_TAGS.items():
                self.client.set_experiment_tag(exp.experiment_id, k, v)
        self.experiment_id = exp.experiment_id
        where = urlparse(exp.artifact_location)  # a local folder, or a server's or object store's URI
        self._local_artifacts = Path(url2pathname(where.path)) if where.scheme == "file" and not where.netloc else None
        self.parent_id = self._parent_run()

    def _parent_run(self) -> str:
        """The study's parent run (tag kind=study): job runs nest under it, reports attach to it."""
        found = self.client.search_runs([self.experiment_id], "tags.kind = 'study'", max_results=1)
        if found:
            return found[0].info.run_id
        tags = {"study": self.study, "kind": "study", "mlflow.runName": f"study {self.study}"}
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def log_report(self, paths: list[Path]) -> None:
        """Attach report files (the heatmaps, report.html) to the study's parent run."""
        for path in paths:
            self.client.log_artifact(self.parent_id, str(path), "report")

    def runs(self, status: str | None = "FINISHED") -> list:
        """Every run of the study (with `status`, if given), paging through the store."""
        query = f"attributes.status = '{status}'" if status else ""
        out, token = [], None
        if self.experiment_id is None:
            return out
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def finished(self) -> dict[str, JobResult]:
        """job_key -> the result of its FINISHED run (metrics and checkpoint)."""
        done = {}
        for run in self.runs("FINISHED"):
            tags = run.data.tags
            key = tags.get("job_key")
            if key is None:
                continue
            done[key] = JobResult(
                key=key, metrics=dict(run.data.metrics), primary_metric=tags.get("primary_metric", ""),
                higher_is_better=tags.get("higher_is_better") == "true", checkpoint=tags.get("checkpoint"),
            )  # fmt: skip
        return done

    def start(self, job: Job, started: float) -> str:
        """Open `job`'s run as RUNNING when a worker starts it (`tmx status` counts it as running)."""
        if job.key not in self._open:
            tags = job.tags(self.study) | {"mlflow.runName": job.name, "mlflow.parentRunId": self.parent_id}
            self._open[job.key] = self._create(started, tags)
        return self._open[job.key]

    def _create(self, started: float, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, start_time=_ms(started), tags=tags).info.run_id

    def _log_json(self, run_id: str, data: object, name: str) -> None:
        """`data` as the run's artifact `name`: written straight into the run's folder under a local artifact
        location (EXPERIMENT_LOCATION/RUN_ID/artifacts, MLflow's layout, without its lookups), else through the
        client (a server, an object store)."""
        text = json.dumps(data, indent=1)
        if self._local_artifacts is not None:
            folder = self._local_artifacts / run_id / "artifacts"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        else:
            self.client.log_text(run_id, text, name)

    def close_stale(self) -> int:
        """Mark runs left RUNNING by a driver that was stopped (killed, interrupted) as KILLED; returns how many."""
        stale = [r for r in self.runs("RUNNING") if r.data.tags.get("kind") != "study" and r.info.run_id not in
                 self._open.values()]  # fmt: skip
        for run in stale:
            self.client.set_tag(run.info.run_id, "error", "interrupted: the driver stopped while it ran")
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(stale)

    def _run_for(self, job: Job, started: float, tags: dict[str, str]) -> str:
        run_id = self._open.pop(job.key, None)
        if run_id is None:
            tags = job.tags(self.study) | {"mlflow.runName": job.name, "mlflow.parentRunId": self.parent_id} | tags
            return self._create(started, tags)
        return run_id

    def record(self, job: Job, result: JobResult) -> str:
        """Log a finished job: its run (opened by `start`, or created now) ends FINISHED; returns its run id."""
        from mlflow.entities import Metric, Param, RunTag

        tags = {"primary_metric": result.primary_metric, "higher_is_better": str(result.higher_is_better).lower()}
        if result.checkpoint:
            tags["checkpoint"] = result.checkpoint
        if result.train_ids:  # which images it trained on: the seeded subset of its split, hashed
            tags["train_ids_hash"] = hashlib.sha256("\n".join(result.train_ids).encode()).hexdigest()[:16]
        run_id = self._run_for(job, result.started, tags)
        end = _ms(result.ended)
        metrics = [Metric(k, float(v), end, 0) for k, v in result.metrics.items()]
        metrics += [Metric("train_loss", float(v), end, step) for step, v in result.curve]
        metrics += [Metric("duration_s", result.ended - result.started, end, 0),
                    Metric("moved_tensors", len(result.moved), end, 0),
                    Metric("skipped_tensors", len(result.skipped), end, 0)]  # fmt: skip
        params = [Param(k, str(v)) for k, v in self._params(job).items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        if job.upstream is not None:
            self._log_json(run_id, {"moved": result.moved, "skipped": result.skipped}, "transfer.json")
        if result.train_ids:
            self._log_json(run_id, {"split": job.train.split, "subset_seed": job.train.subset_seed,
                                    "ids": result.train_ids}, "train_ids.json")  # fmt: skip
        self.client.set_terminated(run_id, "FINISHED", end_time=end)
        return run_id

    def record_failure(self, job: Job, error: str, started: float, ended: float) -> str:
        """Log a job that raised: its run ends FAILED with the reason in the `error` tag."""
        run_id = self._run_for(job, started, {"error": error[:5000]})
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, "FAILED", end_time=_ms(ended))
        return run_id

    def record_skipped(self, job: Job, reason: str, when: float) -> str:
        """Log a job that was not run because its upstream failed: a KILLED run whose `error` tag says why.

        It is no result: the next `tmx run` runs the job again (after its upstream)."""
        run_id = self._run_for(job, when, {"error": reason[:5000]})
        self.client.set_terminated(run_id, "KILLED", end_time=_ms(when))
        return run_id

    @staticmethod
    def _params(job: Job) -> dict[str, object]:
        return {
            "backbone": job.backbone, "image_size": job.image_size, "train_count": job.train.count,
            "eval_count": job.eval.count, **{f"schedule.{k}": v for k, v in job.schedule.items()},
        }  # fmt: skip
