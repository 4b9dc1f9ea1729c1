"""Budgeted sweeps: `tmx run STUDY --budget 0.2` finetunes a fraction of the transfers, chosen as they are measured.

    sweep = Budgeted(jobs, budget=0.2)                      # jobs: plan(study) of a study with `proxies:`
    summary = run_jobs(sweep.fixed, tracker, store, steer=sweep)
    sweep.result                                            # analysis.policy.PolicyResult: order and predictions

1. Every job but the transfers runs first (`fixed`): pretraining, sources, baselines, references, from-scratch
   runs, and a `proxy` job per planned transfer (the source's frozen backbone scored on the target's subset).
2. The pairs table (analysis/policy.py): one row per planned transfer; `target` is the target with its size and
   seed ("city/depth n=48 seed=0", as the report names it), `source` is "dataset/task"; the proxy job's scores
   as `proxy.NAME`, and `same_domain`, `same_task`, `source_size`.
3. `analysis.policy.run_policy` picks the transfers, a batch at a time: its `reveal` runs the batch's transfer
   jobs at once in the same session (`run_jobs`'s steer) and reads each one's value, the transfer's primary
   metric minus its baseline's, sign-adjusted so that higher is better (`abs_gain` in analysis/gains.py: metric
   units; NaN where the transfer or its baseline did not finish). The budget counts transfers: floor(budget x
   planned transfers).

Transfers that already have a FINISHED run (an earlier, smaller budget, or a full run) are the policy's `known`
pairs: a rerun with a larger budget finetunes only the difference, and one with the same budget none.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from matrix.plan import Job
from matrix.results import JobResult

def target_label(job: Job) -> str:
    """A transfer's (or its baseline's) target as the policy and the report name it: dataset/task n=size seed=s."""
    return f"{job.train.dataset}/{job.task} n={job.train.count} seed={job.seed}"


def source_label(job: Job) -> str:
    return f"{job.source.dataset}/{job.source.task}"


def _target_of(job: Job) -> tuple:
    """What a transfer shares with its target's baseline, and with its own proxy job (plus the upstream)."""
    return job.task, job.train, job.seed, job.init


def abs_gain(transfer: JobResult | None, baseline: JobResult | None) -> float:
    """The transfer's primary metric minus the baseline's, sign-adjusted (higher = the source helped); NaN when
    either is missing or did not log the metric."""
    if transfer is None or baseline is None:
        return math.nan
    value = transfer.metrics.get(transfer.primary_metric, math.nan)
    base = baseline.metrics.get(transfer.primary_metric, math.nan)
    return (value - base) * (1.0 if transfer.higher_is_better else -1.0)


class Budgeted:
    """A budgeted sweep of `jobs` (a plan with a proxy job per transfer): `fixed` (every job but the transfers) runs
    first, then, called as `run_jobs`'s steer, it runs the transfers the policy picks (module docstring).

    After the sweep: `result` (the policy's `PolicyResult`: `order`, phases "known", "proxy", "model", and
    `predicted`); `planned`: how many transfers the study plans."""

    def __init__(self, jobs: list[Job], budget: float, seed: int = 0) -> None:
        from analysis.policy import budget_pairs

        self.transfers = [j for j in jobs if j.kind == "transfer"]
        if not self.transfers:
            raise ValueError("the study plans no transfer (no source, or no target): there is nothing to budget")
        proxies = {(j.upstream, *_target_of(j)): j for j in jobs if j.kind == "proxy"}
        missing = [j.name for j in self.transfers if (j.upstream, *_target_of(j)) not in proxies]
        if missing:
            raise ValueError(f"no proxy job for {len(missing)} transfers (e.g. {missing[0]}); a budgeted sweep needs "
                             f"the study's `proxies:`")  # fmt: skip
        self.proxy_of = {j.key: proxies[(j.upstream, *_target_of(j))].key for j in self.transfers}
        self.baseline_of = {_target_of(j): j for j in jobs if j.kind == "baseline"}
        self.fixed = [j for j in jobs if j.kind != "transfer"]
        self.pairs = {(target_label(j), source_label(j)): j for j in self.transfers}
        self.budget, self.seed = budget, seed
        self.planned = len(self.transfers)
        self.allowed = budget_pairs(self.planned, budget)  # ValueError naming the budget
        self.result = None

    def table(self, results: dict[str, JobResult]):
        """The policy's pairs table (module docstring) from the finished proxy jobs' results (NaN where one failed)."""
        import pandas as pd

        from analysis.proxy_quality import PROXY_METRICS

        rows = []
        for (target, source), job in self.pairs.items():
            proxy = results.get(self.proxy_of[job.key])
            scores = proxy.metrics if proxy is not None else {}
            rows.append({"target": target, "source": source,
                         **{f"proxy.{m}": scores.get(m, math.nan) for m in PROXY_METRICS},
                         "same_domain": job.source.domain == job.train.domain_label,
                         "same_task": job.source.task == job.task,
                         "source_size": job.source.size})  # fmt: skip
        return pd.DataFrame(rows)

    def value(self, job: Job, results: dict[str, JobResult]) -> float:
        baseline = self.baseline_of.get(_target_of(job))
        return abs_gain(results.get(job.key), results.get(baseline.key) if baseline else None)

    def __call__(self, run: Callable[[list[Job]], dict[str, JobResult]]) -> None:
        from analysis.policy import run_policy

        results = run([])
        run([job for job in self.transfers if job.key in results])  # counted as done in the run's summary
        known = {pair: self.value(job, results) for pair, job in self.pairs.items() if job.key in results}

        def reveal(pairs: list[tuple[str, str]]) -> list[float]:
            batch = [self.pairs[pair] for pair in pairs]
            done = run(batch)
            return [self.value(job, done) for job in batch]

        self.result = run_policy(self.table(results), reveal, self.budget, seed=self.seed, known=known)
