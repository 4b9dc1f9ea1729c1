"""MLflow tracking: one experiment per study, one run per job. The only module that imports mlflow.

A job's run carries the tags of `Job.tags` (study, kind, job_key, source_*,
target_*, target_size, seed, init), the primary metric's name and direction,
the job's metrics (and its training curve as `train_loss` by step), the
checkpoint path of jobs that others build on, and the ids of the images it
trained on (artifact `train_ids.json`, and their hash in tag `train_ids_hash`), and a sentence saying what
the job is (`describe`, in `mlflow.note.content`: the run's description in the UI). A job whose key has a FINISHED
run is done; the scheduler never runs it again.

The job runs nest under the study's one parent run (tag kind=study), which is RUNNING while a driver runs the
study and ends with the driver's session (`Tracker.session`): FINISHED when every job it ran finished, FAILED when
one failed (or the driver raised), KILLED when the driver was interrupted. A rerun reopens the same parent run, so
it spans the study from its first driver's start to its last driver's end.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from matrix.plan import KINDS, DataRef, Job
from matrix.processes import shielded
from matrix.results import JobResult
from matrix.system_metrics import PREFIX as SYSTEM_PREFIX


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
BATCH = 1000  # metrics per log_batch: MLflow's limit
PAGE = 1000  # runs per page of search_runs


TASK_WORDS = {"segmentation": "semantic segmentation", "detection": "object detection", "depth": "monocular depth",
              "keypoints": "keypoint detection"}  # fmt: skip
TRIVIAL = {  # tasks/reference.py, in words
    "segmentation": "predicts each pixel's majority training class",
    "depth": "predicts each pixel's median training depth",
    "detection": "predicts one box per class at the class's mean training box",
    "keypoints": "predicts one object at the keypoint class's mean box, each keypoint at its mean place in it",
}
INITS = {"generic": "the study's generic pretrained backbone", "imagenet": "the ImageNet-pretrained backbone",
         "scratch": "a randomly initialised backbone"}  # fmt: skip


def _images(n: int) -> str:
    return f"{n} image{'s' * (n != 1)}"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _target(job: Job) -> str:
    """'48 images of town/depth (driving)'"""
    return f"{_images(job.train.count)} of {job.train.dataset}/{job.task} ({job.train.domain_label})"


def _mixture(ref: DataRef) -> str:
    """'640 images drawn from a's 320 (driving, weight 50%) and b's 320 (underwater, weight 50%)'"""
    parts = [f"{r.dataset}'s {r.count} ({r.domain_label}, weight {w:.0%})" for r, w in ref.parts]
    return f"{_images(ref.count)} drawn from {_and(parts)}"


def describe(job: Job) -> str:
    """What `job` is, in one sentence (its run's description in the MLflow UI), e.g.

    'Finetunes the backbone of source city/segmentation (trained on 320 images of the driving domain) on 48 images
    of town/depth (driving), seed 0, and evaluates it on town's val split.'"""
    evaluates = f"evaluates it on {job.eval.dataset}'s {job.eval.split} split"
    seed = f"seed {job.seed}"
    if job.kind == "pretrain":
        domains = f"the {_and(list(job.train.mix))} domains" if job.train.mix else "all procedural image domains"
        return (f"Pretrains the study's generic backbone for {TASK_WORDS.get(job.task, job.task)} on "
                f"{_images(job.train.count)} of a mixture of {domains}, {seed}, and evaluates it on "
                f"{job.eval.count} held-out images; baselines and sources start from it.")  # fmt: skip
    if job.kind == "source":
        start = INITS.get(job.init, f"the {job.init} backbone")
        if job.train.parts:
            data = f"the multi-source {job.train.dataset}, {_mixture(job.train)}"
            evaluates = f"evaluates it on the {job.eval.split} splits of {_and([r.dataset for r, _ in job.eval.parts])}"
        else:
            data = f"{_images(job.train.count)} of {job.train.dataset} ({job.train.domain_label})"
        return (f"Trains {start} with a {TASK_WORDS.get(job.task, job.task)} head on {data}, {seed}, and "
                f"{evaluates}; transfers start from its backbone.")  # fmt: skip
    if job.kind == "transfer":
        src = job.source
        domains = f"the {_and(list(src.domains))} domain{'s' * (len(src.domains) > 1)}"
        of = f"{_and(list(src.datasets))}, " if src.multi else ""
        return (f"Finetunes the backbone of source {src.dataset}/{src.task} (trained on {_images(src.size)} of "
                f"{of}{domains}) on {_target(job)}, {seed}, and {evaluates}.")  # fmt: skip
    if job.kind == "proxy":
        src = job.source
        return (f"Scores the frozen backbone of source {src.dataset}/{src.task} on {_target(job)}, {seed}, by "
                f"transferability proxies (LogME, GBC, H-score) at {job.schedule.get('samples')} sampled features, "
                f"and compares {job.schedule.get('images')} of its training images with the target's: a "
                f"prediction of the transfer's gain, without finetuning.")  # fmt: skip
    if job.kind == "baseline":
        verb = "Trains" if job.init == "scratch" else "Finetunes"
        return (f"{verb} {INITS.get(job.init, f'the {job.init} backbone')} on {_target(job)}, {seed}, and "
                f"{evaluates}: the baseline every transfer onto this target is compared with.")  # fmt: skip
    if job.kind == "scratch":
        return (f"Trains a randomly initialised backbone on {_target(job)}, {seed}, and {evaluates}: what the "
                f"study's init is worth over no pretraining.")  # fmt: skip
    if job.kind == "reference":
        trivial = TRIVIAL.get(job.task, "predicts a constant")
        return (f"Fits the trivial predictor (it {trivial}) on {_target(job)}, {seed}, and scores it on "
                f"{job.eval.dataset}'s {job.eval.split} split: the baseline must beat it for its target to count.")  # fmt: skip
    return f"A {job.kind} job on {_target(job)}, {seed}."


def describe_study(study: str, jobs: list[Job]) -> str:
    """The parent run's description: the study's jobs per kind."""
    counts = Counter(job.kind for job in jobs)
    kinds = ", ".join(f"{counts[k]} {k}" for k in KINDS if counts[k])
    return (f"Study {study}: {len(jobs)} jobs ({kinds}), each a run nested under this one; `tmx report` attaches "
            f"the report here.")  # fmt: skip


def open_client(uri: str):
    """An MlflowClient on `uri`. A new sqlite store's tables (MLflow's schema migrations, seconds) are created under
    an exclusive lock on the file DB.lock next to it, so two drivers starting a new study at once do not both create
    them; the store is then put in write-ahead-log mode."""
    import fcntl

    from mlflow import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    path = uri.removeprefix("sqlite:///")
    try:
        lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: nobody creates a store there either
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri=uri)  # creates a new store's tables
        client.search_experiments(max_results=1)  # ... also where MLflow builds the store on first use
        _write_ahead_log(path)
    finally:
        if lock is not None:
            os.close(lock)  # releases the lock
    return client


def all_runs(client, experiment_id: str, query: str = "") -> list:
    """Every run of the experiment that matches `query` (an MLflow search filter), paged through the store."""
    from mlflow.utils import get_results_from_paginated_fn

    return get_results_from_paginated_fn(
        lambda n, token: client.search_runs([experiment_id], query, max_results=n, page_token=token), PAGE)


def study_experiment(client, study: str, artifact_root: Path | None = None, create: bool = True):
    """The study's MLflow experiment; created when missing (with `artifact_root` as its artifact location, when
    given) unless `create` is False, which returns None then. Two drivers creating it at once get the same one."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(study)
    if exp is None and create:
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        try:
            return client.get_experiment(client.create_experiment(study, artifact_location=location,
                                                                  tags=EXPERIMENT_TAGS))  # fmt: skip
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(study)  # another driver created it a moment ago
    if exp is not None and any(exp.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):  # created before the tag
        for k, v in EXPERIMENT_TAGS.items():
            client.set_experiment_tag(exp.experiment_id, k, v)
    return exp


class Tracker:
    _failures = 0  # jobs recorded FAILED or skipped since the session began

    def __init__(self, uri: str, study: str, artifact_root: Path | None = None, create: bool = True) -> None:
        """Open (and unless `create` is False, create) the study's experiment and parent run."""
        self.uri, self.study = uri, study
        self._open: dict[str, str] = {}  # job key -> its RUNNING run
        self.client = open_client(uri)
        exp = study_experiment(self.client, study, artifact_root, create)
        if exp is None:  # read-only use (plan, status) of a study with no runs yet
            self.experiment_id = self.parent_id = self._local_artifacts = None
            return
        self.experiment_id = exp.experiment_id
        where = urlparse(exp.artifact_location)  # a local folder, or a server's or object store's URI
        self._local_artifacts = Path(url2pathname(where.path)) if where.scheme == "file" and not where.netloc else None
        self.parent_id = self._parent_run()

    def _parent_run(self) -> str:
        """The study's parent run (tag kind=study): job runs nest under it, reports attach to it.

        A new one is RUNNING: the driver that opens a new study creates it, and its `session` ends it."""
        found = self.client.search_runs([self.experiment_id], "tags.kind = 'study'", max_results=1)
        if found:
            return found[0].info.run_id
        tags = {"study": self.study, "kind": "study", "mlflow.runName": f"study {self.study}"}
        return self.client.create_run(self.experiment_id, tags=tags).info.run_id

    @contextmanager
    def session(self, jobs: list[Job] = ()) -> Iterator[None]:
        """A driver's session on the study: the parent run is RUNNING inside, and ends with the session's outcome.

            with tracker.session(jobs):     # jobs: the study's (for the parent's description)
                ...start, record, record_failure, record_skipped...

        On leaving it the parent run ends FINISHED when no job was recorded failed or skipped in it, FAILED when
        one was or the body raised an Exception, KILLED when it was interrupted (KeyboardInterrupt, SystemExit:
        what Ctrl-C, and SIGTERM under Ray or the scheduler, raise). Its start time stays the first session's (MLflow
        keeps a run's start), so its duration spans the study's sessions; while RUNNING again, its end time is the
        previous session's.
        """
        self._failures = 0
        with shielded():
            self._clear_error()
            if jobs:
                self.client.set_tag(self.parent_id, "mlflow.note.content", describe_study(self.study, jobs))
            self.client.update_run(self.parent_id, status="RUNNING")
        try:
            yield
        except (KeyboardInterrupt, SystemExit):
            self._end_parent("KILLED", "interrupted: the driver was stopped")
            raise
        except BaseException as e:
            self._end_parent("FAILED", f"the driver failed: {type(e).__name__}: {e}")
            raise
        else:
            if self._failures:
                self._end_parent("FAILED", f"{self._failures} jobs failed or were skipped")
            else:
                self._end_parent("FINISHED")

    def _clear_error(self) -> None:
        """Drop the parent's `error` tag (a previous session's reason)."""
        if "error" in self.client.get_run(self.parent_id).data.tags:
            self.client.delete_tag(self.parent_id, "error")

    @shielded()
    def _end_parent(self, status: str, error: str = "", end: float | None = None) -> None:
        if error:
            self.client.set_tag(self.parent_id, "error", error[:5000])
        self.client.set_terminated(self.parent_id, status, end_time=_ms(end if end is not None else time.time()))

    def close_study(self) -> None:
        """Nothing is left to run: a parent run not FINISHED (left RUNNING by a driver that was killed, or KILLED
        just after its last job) ends FINISHED at its last job's end. A FINISHED one is left alone, so rerunning a
        finished study does not stretch its duration."""
        if self.client.get_run(self.parent_id).info.status == "FINISHED":
            return
        ends = [r.info.end_time for r in self.runs("FINISHED") if r.data.tags.get("kind") != "study" and r.info.end_time]
        self._clear_error()
        self._end_parent("FINISHED", end=max(ends) / 1000 if ends else None)

    def tag_study(self, tags: dict[str, str | None]) -> None:
        """Set tags on the study's parent run (a budgeted sweep's `budget`, which the report reads); None deletes
        a tag (if it is there)."""
        have = self.study_tags()
        for k, v in tags.items():
            if v is not None:
                self.client.set_tag(self.parent_id, k, v)
            elif k in have:
                self.client.delete_tag(self.parent_id, k)

    def study_tags(self) -> dict[str, str]:
        """The study's parent run's tags ({} for a study with no runs yet)."""
        return dict(self.client.get_run(self.parent_id).data.tags) if self.parent_id else {}

    def log_report(self, paths: list[Path]) -> None:
        """Attach report files (the heatmaps, report.html) to the study's parent run."""
        for path in paths:
            self.client.log_artifact(self.parent_id, str(path), "report")

    def runs(self, status: str | None = "FINISHED") -> list:
        """Every run of the study (with `status`, if given), paging through the store; drivers' lease runs
        (kind=lease, matrix/lease.py) left out."""
        if self.experiment_id is None:
            return []
        query = f"attributes.status = '{status}'" if status else ""
        return [r for r in all_runs(self.client, self.experiment_id, query) if r.data.tags.get("kind") != "lease"]

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
            self._open[job.key] = self._create(started, self._job_tags(job))
        return self._open[job.key]

    def _job_tags(self, job: Job) -> dict[str, str]:
        return job.tags(self.study) | {"mlflow.runName": job.name, "mlflow.parentRunId": self.parent_id,
                                       "mlflow.note.content": describe(job)}  # fmt: skip

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
            return self._create(started, self._job_tags(job) | tags)
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
        metrics += [Metric(SYSTEM_PREFIX + k, float(v), _ms(t), step) for step, (t, sample) in enumerate(result.system)
                    for k, v in sample.items()]  # fmt: skip
        params = [Param(k, str(v)) for k, v in self._params(job).items()]
        self.client.log_batch(run_id, metrics=metrics[:BATCH], params=params,
                              tags=[RunTag(k, v) for k, v in tags.items()])  # fmt: skip
        for i in range(BATCH, len(metrics), BATCH):  # MLflow takes at most 1,000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH])
        if job.upstream is not None:
            self._log_json(run_id, {"moved": result.moved, "skipped": result.skipped}, "transfer.json")
        if result.train_ids:
            self._log_json(run_id, {"split": job.train.split, "subset_seed": job.train.subset_seed,
                                    "ids": result.train_ids}, "train_ids.json")  # fmt: skip
        self.client.set_terminated(run_id, "FINISHED", end_time=end)
        return run_id

    def record_failure(self, job: Job, error: str, started: float, ended: float) -> str:
        """Log a job that raised: its run ends FAILED with the reason in the `error` tag."""
        self._failures += 1
        run_id = self._run_for(job, started, {"error": error[:5000]})
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, "FAILED", end_time=_ms(ended))
        return run_id

    def record_skipped(self, job: Job, reason: str, when: float) -> str:
        """Log a job that was not run because its upstream failed: a KILLED run whose `error` tag says why.

        It is no result: the next `tmx run` runs the job again (after its upstream)."""
        self._failures += 1
        run_id = self._run_for(job, when, {"error": reason[:5000]})
        self.client.set_terminated(run_id, "KILLED", end_time=_ms(when))
        return run_id

    @staticmethod
    def _params(job: Job) -> dict[str, object]:
        return {
            "backbone": job.backbone, "image_size": job.image_size, "train_count": job.train.count,
            "eval_count": job.eval.count, **{f"schedule.{k}": v for k, v in job.schedule.items()},
        }  # fmt: skip
