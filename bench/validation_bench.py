"""Bench: the budgeted policy and the transferability proxies scored against a real, complete transfer matrix.

Validation on ground truth (issue 15.6). `bench/validation.yaml` is a study on procedural domains with planted
distances (datasets whose look is moved part of the way towards another domain) over all four task types, with a
proxy job for every transfer. This bench runs it (`tmx run`: finished jobs are skipped, so a rerun only reads),
loads its runs, keeps the transfers whose gain counts (a baseline that beats its trivial predictor, a defined gain)
and builds the table of (target, source) pairs with their measured value and proxies (`proxy_table`). Then, per
target task type:

  (a) the budgeted policy (`run_policy`) at one global budget (default 0.2 of all pairs) over the whole table at
      once, as the live sweep spends it, scored per task type on that type's pairs (`replay_metrics`: best_found,
      top3_recall, mean_regret in the value's units), beside random selection (mean of 20 global draws) and
      proxy-top-k at the same budget;
  (b) each proxy's ranking quality (`proxy_quality(table, by="task")`): weighted tau, Kendall tau, top-1 and
      top-3 hits, as means over that type's targets;
  (c) the goal: the true best source run for at least 90% of targets on every task type (printed, not asserted).

Also printed: the matrix (sources x targets), the targets per task type with each baseline beside its trivial
predictor and the spread of its transfers' values, and the wall time (this `tmx run`, and the study's span in the
tracking store: first job start to last job end, which is the full run's wall time even when this call only read).

    .venv/bin/python bench/validation_bench.py [--study bench/validation.yaml] [--budget 0.2] [--max-parallel 2]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.gains import baseline_check, mark_gains, transfer_gains  # noqa: E402
from analysis.load import JOB_RUNS, finished, load_runs  # noqa: E402
from analysis.policy import METRICS, budget_pairs, proxy_top_k_policy, replay_metrics, run_policy  # noqa: E402
from analysis.proxy_quality import proxy_quality, proxy_table  # noqa: E402
from matrix.plan import count_by_kind, plan  # noqa: E402
from matrix.spec import load_study  # noqa: E402
from matrix.tracking import default_tracking_uri  # noqa: E402

GOAL = 0.9  # best_found on every task type
RANDOM_DRAWS = 20


def run_study(study_file: Path, max_parallel: int) -> tuple[float, int]:
    """`tmx run` the study (skips finished jobs); its wall seconds and exit status."""
    tmx = Path(sys.executable).with_name("tmx")
    cmd = [str(tmx)] if tmx.exists() else [sys.executable, "-m", "matrix.cli"]
    t0 = time.perf_counter()
    rc = subprocess.run([*cmd, "run", str(study_file), "--max-parallel", str(max_parallel)], cwd=ROOT).returncode
    return time.perf_counter() - t0, rc


def study_span(uri: str, name: str) -> tuple[float, float]:
    """(first job start to last job end, sum of job durations) in seconds over the study's finished job runs."""
    from mlflow import MlflowClient

    from matrix.tracking import all_runs

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    runs = [r for r in all_runs(client, exp.experiment_id, JOB_RUNS) if r.info.status == "FINISHED" and r.info.end_time]
    if not runs:
        return math.nan, math.nan
    start = min(r.info.start_time for r in runs)
    end = max(r.info.end_time for r in runs)
    return (end - start) / 1000, sum(r.info.end_time - r.info.start_time for r in runs) / 1000


def per_task(table: pd.DataFrame, pairs: set[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """replay_metrics of the run `pairs` on each task type's rows of `table`."""
    out = {}
    for task, rows in table.groupby("task", sort=True):
        ran = [p for p in pairs if p[0] in set(rows["target"])]
        out[task] = replay_metrics(rows, ran)
    return out


def random_per_task(table: pd.DataFrame, n: int, seed: int) -> dict[str, dict[str, float]]:
    """Random selection of `n` pairs over the whole table, per task type: the mean over RANDOM_DRAWS draws."""
    canonical = table.sort_values(["target", "source"]).reset_index(drop=True)
    pairs = list(zip(canonical["target"], canonical["source"]))
    draws = []
    for i in range(RANDOM_DRAWS):
        pick = np.random.default_rng(seed + i).permutation(len(pairs))[:n]
        draws.append(per_task(table, {pairs[j] for j in pick}))
    return {t: {m: float(np.mean([d[t][m] for d in draws])) for m in METRICS} for t in draws[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "bench" / "validation.yaml"))
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-run", action="store_true", help="only read the study's finished runs")
    args = parser.parse_args()
    study_file = Path(args.study).resolve()
    study = load_study(study_file)
    out = study.out if study.out.is_absolute() else ROOT / study.out
    uri = default_tracking_uri(out)

    jobs = plan(study)
    counts = count_by_kind(jobs)
    n_sources = counts.get("source", 0)
    targets_planned = {(j.train.dataset, j.task) for j in jobs if j.kind == "baseline"}
    print(f"study {study.name} ({study_file.relative_to(ROOT) if study_file.is_relative_to(ROOT) else study_file}): "
          f"{len(jobs)} jobs: " + ", ".join(f"{n} {k}" for k, n in counts.items()))  # fmt: skip
    print(f"matrix: {n_sources} sources x {len(targets_planned)} targets = {counts.get('transfer', 0)} transfers, "
          f"{counts.get('proxy', 0)} proxy jobs; image size {study.image_size}, target sizes "
          f"{list(study.target_sizes)}, seeds {list(study.seeds)}")  # fmt: skip

    if not args.no_run:
        wall, rc = run_study(study_file, args.max_parallel)
        print(f"\ntmx run --max-parallel {args.max_parallel}: {wall:.0f} s this call (exit status {rc})")
    span, busy = study_span(uri, study.name)
    print(f"study in the tracking store: {span:.0f} s ({span / 60:.1f} min) from the first job's start to the last "
          f"job's end; {busy:.0f} job-seconds in all")  # fmt: skip

    runs = load_runs(uri, study.name)
    runs = runs[runs["job_key"].isin({j.key for j in jobs})]  # not an earlier protocol's or proxy features' runs
    done = finished(runs)
    check = baseline_check(done)
    gains = mark_gains(transfer_gains(done), check)
    table = proxy_table(done, gains)
    if table.empty:
        sys.exit("no table: the study has no finished proxy runs with a counted gain")
    failed = runs[(runs["status"] == "FAILED") & ~runs["job_key"].isin(set(done["job_key"]))]
    print(f"runs: {len(done)} finished, {failed['job_key'].nunique()} failed; transfers with a counted gain and a "
          f"proxy: {len(table)} of {counts.get('transfer', 0)}")  # fmt: skip
    for row in failed.drop_duplicates("job_key").itertuples():
        print(f"  failed: {row.name}: {str(row.error).splitlines()[0] if row.error else ''}")

    print("\ntargets per task type: baseline vs trivial predictor (reference), and the transfers' values "
          "(table `value`: higher is better)")  # fmt: skip
    for task, rows in check.groupby("target_task", sort=True):
        counted = table[table["task"] == task]
        print(f"  {task}: {counted['target'].nunique()} targets counted of {len(rows)}")
        for r in rows.itertuples():
            v = counted[counted["target"].str.startswith(f"{r.target_dataset}/{task} ")]["value"]
            spread = (f"min {v.min():+.3f} median {v.median():+.3f} max {v.max():+.3f} over {len(v)} sources"
                      if len(v) else "none counted")  # fmt: skip
            print(f"    {r.target_dataset:<8} {r.primary_metric} baseline {r.baseline:.4f} reference {r.reference:.4f} "
                  f"{'beats' if r.beats_reference else 'DOES NOT BEAT'}; transfers {spread}")  # fmt: skip

    n = budget_pairs(len(table), args.budget)
    values = dict(zip(zip(table["target"], table["source"]), table["value"]))

    def reveal(pairs: list[tuple[str, str]]) -> list[float]:  # a batch of (target, source) pairs -> their values
        return [values[pair] for pair in pairs]

    t0 = time.perf_counter()
    budgeted = run_policy(table.drop(columns="value"), reveal, args.budget, seed=args.seed)
    elapsed = time.perf_counter() - t0
    top_k = proxy_top_k_policy(table.drop(columns="value"), reveal, args.budget)
    results = {
        "budgeted": per_task(table, set(zip(budgeted.order["target"], budgeted.order["source"]))),
        "random": random_per_task(table, n, args.seed),
        "proxy_top_k": per_task(table, set(zip(top_k.order["target"], top_k.order["source"]))),
    }
    overall = replay_metrics(table, budgeted.order)
    print(f"\n(a) budget {args.budget}: {n} of {len(table)} pairs, one global budget over all task types "
          f"(budgeted policy {elapsed:.2f} s); per task type, on its own pairs:")  # fmt: skip
    print(f"  {'task':<14}{'policy':<13}" + "".join(f"{m:>13}" for m in METRICS))
    for task in sorted(results["budgeted"]):
        for policy, res in results.items():
            print(f"  {task:<14}{policy:<13}" + "".join(f"{res[task][m]:>13.3f}" for m in METRICS))
    print(f"  {'all':<14}{'budgeted':<13}" + "".join(f"{overall[m]:>13.3f}" for m in METRICS))
    for task in sorted(results["budgeted"]):
        b, r, p = (results[k][task] for k in ("budgeted", "random", "proxy_top_k"))
        ratio = (lambda x, y: f"{x / y:.2f}" if y > 0 else "inf" if x > 0 else "n/a")
        print(f"  {task}: best_found budgeted / random {ratio(b['best_found'], r['best_found'])}, "
              f"budgeted / proxy_top_k {ratio(b['best_found'], p['best_found'])}")  # fmt: skip

    ran = budgeted.order.groupby("target")["source"].agg(list)
    print("  per target: its true best source, the pairs the budgeted policy ran on it, and the best of them")
    for (task, target), rows in table.groupby(["task", "target"], sort=True):
        best = rows.loc[rows["value"].idxmax()]
        mine = rows[rows["source"].isin(ran.get(target, []))]
        got = mine.loc[mine["value"].idxmax()] if len(mine) else None
        found = got is not None and got["value"] >= best["value"]
        print(f"    {target:<32} best {best['source']:<20} {best['value']:+.4f}; ran {len(mine)} of {len(rows)}"
              + (f", best run {got['source']:<20} {got['value']:+.4f}" if got is not None else "")
              + (" (found)" if found else ""))  # fmt: skip

    q = proxy_quality(table, by="task", seed=args.seed).summary
    cols = ["n_targets", "weighted_tau_mean", "kendall_tau_mean", "top1_hit_mean", "top3_hit_mean"]
    print("\n(b) proxy quality per task type (means over its targets; higher is better):")
    with pd.option_context("display.width", 200):
        for task, rows in q.groupby("task", sort=True):
            print(f"  {task}:")
            print("    " + rows.set_index("proxy")[cols].round(3).to_string().replace("\n", "\n    "))

    met = {t: results["budgeted"][t]["best_found"] >= GOAL for t in results["budgeted"]}
    print(f"\n(c) goal at budget {args.budget}: the true best source finetuned for >= {GOAL:.0%} of targets on every "
          "task type:")  # fmt: skip
    for task, ok in met.items():
        print(f"  {task:<14} best_found {results['budgeted'][task]['best_found']:.3f}: {'met' if ok else 'NOT met'}")
    print(f"  goal {'MET' if all(met.values()) else 'NOT MET'} ({sum(met.values())} of {len(met)} task types)")


if __name__ == "__main__":
    main()
