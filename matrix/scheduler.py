"""Running a job DAG on Ray Core tasks, logging each job to the tracker as it ends.

    summary = run_jobs(jobs, tracker, store)            # embedded local Ray
    summary = run_jobs(jobs, tracker, store, address="ray://head:10001")

Jobs whose key already has a FINISHED run are not run. A transfer is
submitted with its source's result reference as an argument, so Ray starts it
as soon as that source is done. A job that raises is logged FAILED with its
reason; jobs downstream of it are skipped and counted, never silently dropped.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from matrix.jobs import CheckpointStore, JobResult, execute
from matrix.plan import KINDS, Job
from matrix.tracking import Tracker


@dataclass
class RunSummary:
    total: int
    already_done: int
    finished: Counter = field(default_factory=Counter)  # per kind
    failed: dict[str, str] = field(default_factory=dict)  # job name -> reason
    skipped: dict[str, str] = field(default_factory=dict)  # job name -> reason

    @property
    def launched(self) -> int:
        return sum(self.finished.values()) + len(self.failed) + len(self.skipped)


def _reason(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


def _local_auth_token() -> None:
    """Give the embedded cluster a per-process auth token, so Ray keeps token auth on without
    writing ~/.ray/auth_token. A token or mode the user configured is left alone."""
    if not any(v in os.environ for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def run_jobs(
    jobs: list[Job],
    tracker: Tracker,
    store: CheckpointStore,
    address: str | None = None,
    max_parallel: int | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run every job of `jobs` (topologically ordered) that has no FINISHED run yet."""
    console = console or Console(stderr=True)
    done = tracker.finished()
    todo = [j for j in jobs if j.key not in done]
    summary = RunSummary(total=len(jobs), already_done=len(jobs) - len(todo))
    if not todo:
        return summary

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if address is None:
        _local_auth_token()
        ray.init(num_cpus=max_parallel or os.cpu_count(), include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)  # fmt: skip
    else:
        ray.init(address=address, logging_level="ERROR")
    try:
        remote = ray.remote(num_cpus=1, max_retries=2)(execute)
        refs: dict[str, ray.ObjectRef] = {}
        pending: dict[ray.ObjectRef, tuple[Job, float]] = {}
        for job in todo:
            upstream: ray.ObjectRef | JobResult | None = None
            if job.upstream is not None:
                upstream = refs.get(job.upstream) or done.get(job.upstream)
            ref = remote.options(name=job.name[:100]).remote(job, upstream, store)
            refs[job.key] = ref
            pending[ref] = (job, time.time())
        _collect(pending, tracker, summary, console, ray)
    finally:
        ray.shutdown()
    return summary


def _collect(pending: dict, tracker: Tracker, summary: RunSummary, console: Console, ray) -> None:
    totals = Counter(job.kind for job, _ in pending.values())
    failed_keys: set[str] = set()
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        bars = {k: progress.add_task(k, total=totals[k]) for k in KINDS if totals[k]}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job, submitted = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # a job raised, or its upstream did
                    if job.upstream in failed_keys:
                        summary.skipped[job.name] = f"upstream {job.upstream} failed"
                    else:
                        reason = _reason(e)
                        tracker.record_failure(job, reason, submitted, time.time())
                        summary.failed[job.name] = reason
                        console.print(f"[red]FAILED[/red] {job.name}: {reason}")
                    failed_keys.add(job.key)
                else:
                    tracker.record(job, result)
                    summary.finished[job.kind] += 1
                progress.advance(bars[job.kind])
