"""Where a study stands: per job kind, how many planned jobs are done, running, failed, skipped or pending.

    table, failed = study_status(jobs, runs)

`runs` are (job_key, status, error) of the study's job runs in the tracking
store. A job is done when its key has a FINISHED run; failed when it has no
FINISHED run and its latest run FAILED; running when its latest run is
RUNNING (a worker has started it); skipped when its latest run is the
KILLED one the scheduler records for a job whose upstream failed; pending
otherwise (never run, or interrupted).
"""

from __future__ import annotations

from collections import Counter

from matrix.plan import KINDS, Job

FIELDS = ("planned", "done", "running", "failed", "skipped", "pending")
SKIPPED = "skipped: "  # how the `error` of a skipped job's KILLED run begins (matrix.scheduler writes it)


def study_status(jobs: list[Job], runs: list[tuple[str, str, str | None, int]]) -> tuple[list[dict], list[dict]]:
    """Rows of {kind, planned, done, running, failed, skipped, pending} (plus a total) and the failed and skipped
    jobs with their reasons (`state` says which).

    `runs` holds (job_key, status, error, start_time) per run.
    """
    finished = {key for key, status, _, _ in runs if status == "FINISHED"}
    latest: dict[str, tuple[int, str, str | None]] = {}
    for key, status, error, start in runs:
        if key not in latest or start >= latest[key][0]:
            latest[key] = (start, status, error)
    counts: dict[str, Counter] = {k: Counter() for k in KINDS}
    failed = []
    for job in jobs:
        c = counts[job.kind]
        c["planned"] += 1
        if job.key in finished:
            c["done"] += 1
        elif job.key in latest and latest[job.key][1] == "RUNNING":
            c["running"] += 1
        elif job.key in latest and latest[job.key][1] == "FAILED":
            c["failed"] += 1
            failed.append({"kind": job.kind, "name": job.name, "job_key": job.key, "state": "failed",
                           "error": latest[job.key][2] or ""})  # fmt: skip
        elif job.key in latest and latest[job.key][1] == "KILLED" and (latest[job.key][2] or "").startswith(SKIPPED):
            c["skipped"] += 1
            failed.append({"kind": job.kind, "name": job.name, "job_key": job.key, "state": "skipped",
                           "error": latest[job.key][2]})  # fmt: skip
        else:
            c["pending"] += 1
    rows = [{"kind": k, **{f: c[f] for f in FIELDS}} for k, c in counts.items()
            if c["planned"]]  # fmt: skip
    rows.append({"kind": "total", **{f: sum(r[f] for r in rows) for f in FIELDS}})
    return rows, failed
