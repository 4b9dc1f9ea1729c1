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
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from matrix.store import Storage
from matrix.plan import KINDS, Job
from matrix.processes import STOPPING, interrupt_on, shielded
from matrix.results import JobResult
from matrix.status import SKIPPED
from matrix.system_metrics import Sampled
from matrix.tracking import Tracker


MAX_IN_FLIGHT = 1000  # jobs submitted to Ray and not yet collected
# application errors worth another try on another worker (worker and node deaths are always retried)
RETRY_ON = [MemoryError, ConnectionError, TimeoutError]


@dataclass
class RunSummary:
    total: int
    already_done: int
    finished: Counter = field(default_factory=Counter)  # per kind
    failed: dict[str, str] = field(default_factory=dict)  # job name -> reason
    skipped: dict[str, str] = field(default_factory=dict)  # job name -> reason

    @property
    def ran(self) -> int:
        """Jobs run this time: those that finished and those that failed (not the skipped ones)."""
        return sum(self.finished.values()) + len(self.failed)


def _reason(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


@contextmanager
def ray_session(address: str | None, max_parallel: int | None, env: dict[str, str] | None = None):
    """Connect to the cluster at `address`, or start an embedded one, for the block (which gets the `ray` module);
    Ray is shut down after it.

    Ray's processes read their settings from the environment: Ray's usage-stats switch (off) and `env` are set
    there for the session only. The embedded cluster keeps Ray's token auth on without writing
    ~/.ray/auth_token: it gets a token of this process in RAY_AUTH_TOKEN (a token or mode the user configured is
    left alone), which stays set after the session: Ray's driver reads the token once and keeps it, so any Ray
    cluster this process starts later must have the same (without it, its GCS does not start)."""
    if address is None and not any(v in os.environ for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    session = {k: v for k, v in ({"RAY_USAGE_STATS_ENABLED": "0"} | (env or {})).items() if k not in os.environ}
    os.environ.update(session)
    try:
        import ray

        # ray.init sets its own SIGTERM handler (sys.exit); a handler the caller set (run_jobs') stays
        main = threading.current_thread() is threading.main_thread()
        term = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if address is None:
                # "local": always a new embedded cluster, even when a `ray start` one runs on this machine
                ray.init(address="local", num_cpus=max_parallel or os.cpu_count(), include_dashboard=False,
                         logging_level="ERROR", log_to_driver=False)  # fmt: skip
            else:
                ray.init(address=address, logging_level="ERROR")
            if callable(term):
                signal.signal(signal.SIGTERM, term)
            yield ray
        finally:
            ray.shutdown()
    finally:
        for k in session:
            os.environ.pop(k, None)


def execute(job: Job, upstream: JobResult | None, store: Storage) -> JobResult:
    """`matrix.execute.execute`, imported where the job runs (a Ray worker): the driver imports no torch."""
    from matrix.execute import execute as run

    return run(job, upstream, store)


Steer = Callable[[Callable[[list[Job]], dict[str, JobResult]]], None]


def run_jobs(
    jobs: list[Job],
    tracker: Tracker | Future[Tracker],
    store: Storage,
    address: str | None = None,
    max_parallel: int | None = None,
    console: Console | None = None,
    in_process: bool = False,
    fn: Callable[[Job, JobResult | None, Storage], JobResult] = execute,
    resources: dict[str, dict[str, float]] | None = None,
    system_metrics: float | None = None,
    steer: Steer | None = None,
    described: list[Job] | None = None,
) -> RunSummary:
    """Run every job of `jobs` (topologically ordered) that has no FINISHED run yet.

    `tracker` may still be opening (a Future: a new study's MLflow store takes
    seconds to create); Ray then starts meanwhile rather than after it.
    `in_process=True` runs them one after another in this process, without Ray
    (for debugging, and as the reference the scheduler's speed-up is measured against).
    `fn` is what runs a job (`matrix.execute.execute`); the scheduler bench swaps in a no-op.
    `resources` maps a job kind to what each of its jobs asks Ray for ({"num_cpus": 1, "num_gpus": 0.5});
    kinds not given take 1 CPU and no GPU. Ray gives a job with GPUs its own CUDA_VISIBLE_DEVICES.
    `system_metrics`: every that many seconds, the worker samples CPU, memory and GPUs while each job runs, and
    its run gets the samples as `system/...` metrics (matrix/system_metrics.py); None: no sampling.

    `steer`, when given, is called after `jobs` have run, in the same session (Ray cluster, parent run, progress
    display), with `run(more)`: it runs the jobs `more` (whose upstreams have run) that have no FINISHED run yet,
    and returns the result of every job FINISHED so far, by key. A budgeted sweep (matrix/budget.py) picks the
    transfers it runs that way, batch after batch. `described`: the jobs the parent run's description lists
    (default `jobs`).
    """
    console = console or Console(stderr=True)
    if system_metrics is not None:
        fn = Sampled(fn, system_metrics)
    # SIGTERM and SIGHUP stop the driver as Ctrl-C (SIGINT) does, with a KeyboardInterrupt, and none of the three
    # cuts a write to the tracking store in half (`shielded`): the parent run ends KILLED, an embedded Ray cluster
    # shuts down, and `tmx run` says how to go on
    with interrupt_on(*STOPPING), ExitStack() as stack:
        ray = None
        if isinstance(tracker, Future):
            if not in_process:
                ray = stack.enter_context(ray_session(address, max_parallel))
            tracker = tracker.result()
        with shielded():
            store.sweep()
            tracker.close_stale()
            done = tracker.finished()
        todo = [j for j in jobs if j.key not in done]
        summary = RunSummary(total=len(jobs), already_done=len(jobs) - len(todo))
        if not todo and steer is None:
            with shielded():
                tracker.close_study()
            return summary
        # the study's parent run: RUNNING now, then FINISHED, FAILED (a job failed) or KILLED (interrupted)
        with tracker.session(described or jobs), _Ledger(todo, tracker, summary, console) as ledger:
            if in_process:
                runner = _Here(done, store, ledger, fn)
            else:
                ray = ray or stack.enter_context(ray_session(address, max_parallel))
                runner = _OnRay(ray, done, store, ledger, fn, resources or {})
            runner.run(todo)
            if steer is not None:
                steer(lambda more: _run_more(more, runner, summary, ledger))
        return summary


def _run_more(more: list[Job], runner: _Here | _OnRay, summary: RunSummary, ledger: _Ledger) -> dict[str, JobResult]:
    """A steer's `run`: `more`'s jobs without a result, counted into the summary and the progress display."""
    todo = [j for j in more if j.key not in runner.results]
    summary.total += len(more)
    summary.already_done += len(more) - len(todo)
    ledger.expect(todo)
    runner.run(todo)
    return runner.results


class _Here:
    """Runs jobs one after another in this process; `results` holds every FINISHED job's, by key."""

    def __init__(self, done: dict[str, JobResult], store: Storage, ledger: _Ledger, fn) -> None:
        self.results, self.store, self.ledger, self.fn = dict(done), store, ledger, fn

    def run(self, todo: list[Job]) -> None:
        for job in todo:
            started = time.time()
            if job.upstream in self.ledger.unfinished:
                self.ledger.skipped(job)
                continue
            self.ledger.started(job, started)
            try:
                result = self.fn(job, self.results.get(job.upstream) if job.upstream else None, self.store)
            except Exception as e:
                self.ledger.failed(job, e, started)
            else:
                self.results[job.key] = result
                self.ledger.finished(job, result)


class _OnRay:
    """Runs jobs as Ray tasks, a job as soon as its upstream is done; `results` holds every FINISHED job's, by key."""

    def __init__(self, ray, done: dict[str, JobResult], store: Storage, ledger: _Ledger, fn,
                 resources: dict[str, dict[str, float]]) -> None:  # fmt: skip
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.results, self.store, self.ledger, self.resources = ray, dict(done), store, ledger, resources
        # workers put (job key, time) here when a job starts, and the driver opens its run; the queue lives on
        # the driver's node, so losing a worker node never loses it
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.starts = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.remote = ray.remote(num_cpus=1, max_retries=2, retry_exceptions=RETRY_ON)(_signalling(fn, self.starts))

    def run(self, todo: list[Job]) -> None:
        ray, ledger = self.ray, self.ledger
        by_key = {job.key: job for job in todo}
        refs: dict[str, ray.ObjectRef] = {}
        pending: dict[ray.ObjectRef, tuple[Job, float]] = {}
        queue = deque(todo)  # topological: a job's upstream is always submitted before it
        while queue or pending:
            while queue and len(pending) < MAX_IN_FLIGHT:  # bounded: a huge study does not flood the driver
                job = queue.popleft()
                upstream: ray.ObjectRef | JobResult | None = None
                if job.upstream is not None:
                    upstream = refs.get(job.upstream) or self.results.get(job.upstream)
                asks = {"num_cpus": 1, "num_gpus": 0} | self.resources.get(job.kind, {})
                ref = self.remote.options(name=job.name[:100], **asks).remote(job, upstream, self.store)
                refs[job.key] = ref
                pending[ref] = (job, time.time())
            ready, rest = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if ready and rest:  # and whatever else has ended meanwhile, without waiting
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            if self.starts.qsize():  # (a message that comes after its job ended opens no run)
                for key, started in self.starts.get_nowait_batch(self.starts.qsize()):
                    if key in by_key:
                        ledger.started(by_key.pop(key), started)
            for ref in ready:
                job, submitted = pending.pop(ref)
                by_key.pop(job.key, None)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the job raised, or its upstream did (then Ray never ran it)
                    if job.upstream in ledger.unfinished:
                        ledger.skipped(job)
                    else:
                        ledger.failed(job, e, submitted)
                else:
                    self.results[job.key] = result
                    ledger.finished(job, result)


def _signalling(fn, starts):
    """`fn` that first tells the driver, through the `starts` queue, that the job has started on a worker."""

    def job_task(job: Job, upstream: JobResult | None, store: Storage) -> JobResult:
        try:  # sent, not awaited: a task blocked in ray.get lends its CPU to another task, and 2 cores run 3 jobs
            starts.actor.put_nowait.remote((job.key, time.time()))
        except Exception:  # the status display misses a start; the job itself goes on
            pass
        return fn(job, upstream, store)

    return job_task


class _Ledger:
    """Records each ended job (tracker, summary, progress display) the same way for both executors."""

    def __init__(self, todo: list[Job], tracker: Tracker, summary: RunSummary, console: Console) -> None:
        self.tracker, self.summary, self.console = tracker, summary, console
        self.unfinished: set[str] = set()  # keys of the jobs that failed or were skipped: their dependants are skipped
        self.names = {job.key: job.name for job in todo}
        self.total, self.ended = len(todo), 0
        self.totals = totals = Counter(job.kind for job in todo)
        columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
        self.progress = Progress(*columns, console=console, transient=False, disable=not console.is_terminal)
        self.bars = {k: self.progress.add_task(k, total=totals[k]) for k in KINDS if totals[k]}

    def __enter__(self) -> _Ledger:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def expect(self, more: list[Job]) -> None:
        """`more` jobs are to run too (a steer's batch): they join the totals."""
        self.total += len(more)
        for kind, n in Counter(job.kind for job in more).items():
            self.totals[kind] += n
            if kind in self.bars:
                self.progress.update(self.bars[kind], total=self.totals[kind])
            else:
                self.bars[kind] = self.progress.add_task(kind, total=n)
        self.names.update({job.key: job.name for job in more})

    # each records a job whole: a signal that arrives meanwhile is raised after it (matrix/processes.py)
    @shielded()
    def started(self, job: Job, when: float) -> None:
        self.tracker.start(job, when)

    @shielded()
    def finished(self, job: Job, result: JobResult) -> None:
        self.tracker.record(job, result)
        self.summary.finished[job.kind] += 1
        self._advance(job, "finished")

    @shielded()
    def failed(self, job: Job, error: BaseException, started: float) -> None:
        """`job` raised `error`."""
        reason = _reason(error)
        self.tracker.record_failure(job, reason, started, time.time())
        self.summary.failed[job.name] = reason
        self.console.print(f"[red]FAILED[/red] {job.name}: {reason}")
        self._advance(job, "failed")
        self.unfinished.add(job.key)

    @shielded()
    def skipped(self, job: Job) -> None:
        """`job` was not run: its upstream failed or was skipped."""
        upstream = self.names.get(job.upstream, job.upstream)
        reason = f"{SKIPPED}its upstream {upstream} {'was skipped' if upstream in self.summary.skipped else 'failed'}"
        self.tracker.record_skipped(job, reason, time.time())
        self.summary.skipped[job.name] = reason
        self._advance(job, "skipped")
        self.unfinished.add(job.key)

    def _advance(self, job: Job, state: str) -> None:
        self.progress.advance(self.bars[job.kind])
        self.ended += 1
        if not self.console.is_terminal:  # a log, not a screen: one line per job
            self.console.print(f"[{self.ended}/{self.total}] {state}: {job.name}", highlight=False)
