"""Bench: the budgeted policy against random selection and proxy-top-k on planted value matrices.

Each planted study has D domains x K datasets; every dataset is a target and a source (no self-transfer):
value[t, s] = a_t + b_s + same_domain(t, s) * domain + u_t . v_s (rank 2) + noise. Two proxies are planted:
`proxy.good`, the value plus noise (within a target, weighted tau with the value about 0.6: a little below LogME's
0.64 on Mensink's segmentation targets per Agostinelli et al.), and `proxy.weak`, a noisier one; the bench prints
their quality (`proxy_quality`) first. The policies replay on each table at
each budget; the bench prints the metrics averaged over tables, the ratios budgeted / random and
budgeted / proxy-top-k measured in the same run, and how often the budgeted policy's 95% intervals cover the
true values of the pairs it did not run.

    .venv/bin/python bench/replay_bench.py [--tables 20] [--domains 5] [--per-domain 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.policy import METRICS, replay, run_policy  # noqa: E402
from analysis.proxy_quality import proxy_quality  # noqa: E402


def planted_table(seed: int, domains: int = 5, per_domain: int = 4, noise: float = 0.3, good: float = 1.0,
                  weak: float = 2.0) -> pd.DataFrame:  # fmt: skip
    """A complete planted table (module docstring); proxy noise sds `good` and `weak` in units of the
    within-target sd of the value."""
    rng = np.random.default_rng(seed)
    names = [f"d{d}_{k}" for d in range(domains) for k in range(per_domain)]
    domain = np.repeat(np.arange(domains), per_domain)
    n = len(names)
    a, b = rng.normal(0, 1.0, n), rng.normal(0, 0.7, n)
    u, v = rng.normal(0, 0.6, (n, 2)), rng.normal(0, 0.6, (n, 2))
    size = rng.choice([500, 2000, 10000, 50000], n)
    rows = []
    for t in range(n):
        for s in range(n):
            if s == t:
                continue
            same = domain[s] == domain[t]
            value = a[t] + b[s] + 0.8 * same + u[t] @ v[s] + 0.15 * np.log10(size[s]) + rng.normal(0, noise)
            rows.append((names[t], names[s], value, bool(same), int(size[s])))
    table = pd.DataFrame(rows, columns=["target", "source", "value", "same_domain", "source_size"])
    within = table.groupby("target")["value"].transform(lambda c: c - c.mean())
    sd = within.std()
    table["proxy.good"] = within + rng.normal(0, good * sd, len(table))
    table["proxy.weak"] = within + rng.normal(0, weak * sd, len(table))
    return table


def coverage(table: pd.DataFrame, budget: float, seed: int) -> float:
    """The fraction of unrun pairs whose true value lies in the budgeted policy's 95% interval."""
    values = dict(zip(zip(table["target"], table["source"]), table["value"]))
    result = run_policy(table.drop(columns="value"), lambda pairs: [values[p] for p in pairs], budget, seed=seed)
    p = result.predicted.merge(table[["target", "source", "value"]], on=["target", "source"], suffixes=("", "_true"))
    p = p[~p["measured"]]
    return float(((p["value_true"] >= p["lower"]) & (p["value_true"] <= p["upper"])).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--domains", type=int, default=5)
    parser.add_argument("--per-domain", type=int, default=4)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    args = parser.parse_args()
    tables = [planted_table(1000 + i, args.domains, args.per_domain) for i in range(args.tables)]
    n = len(tables[0])
    print(f"{args.tables} planted tables, {args.domains * args.per_domain} targets x "
          f"{args.domains * args.per_domain - 1} sources = {n} pairs each")  # fmt: skip
    quality = pd.concat([proxy_quality(t, seed=i).summary for i, t in enumerate(tables)])
    cols = ["kendall_tau_mean", "weighted_tau_mean", "top1_hit_mean", "top3_hit_mean"]
    print("proxy quality, mean over targets, then over tables:")
    print(quality.groupby("proxy", sort=False)[cols].mean().round(3).to_string())
    for budget in args.budgets:
        t0 = time.perf_counter()
        runs = [replay(t, budget, seed=i) for i, t in enumerate(tables)]
        elapsed = time.perf_counter() - t0
        mean = {p: {m: float(np.mean([r[p][m] for r in runs])) for m in METRICS} for p in runs[0]}
        sd = {p: {m: float(np.std([r[p][m] for r in runs])) for m in METRICS} for p in runs[0]}
        print(f"\nbudget {budget}  ({elapsed / len(tables):.2f} s per table for the three policies)")
        print(f"  {'policy':<12}" + "".join(f"{m:>20}" for m in METRICS))
        for p in mean:
            print(f"  {p:<12}" + "".join(f"{mean[p][m]:>12.3f} +- {sd[p][m]:.3f}" for m in METRICS))
        for m in ("best_found", "top3_recall"):
            print(f"  {m}: budgeted / random {mean['budgeted'][m] / mean['random'][m]:.2f}, "
                  f"budgeted / proxy_top_k {mean['budgeted'][m] / mean['proxy_top_k'][m]:.2f}")  # fmt: skip
        regret = {p: mean[p]["mean_regret"] for p in mean}
        print(f"  mean_regret: budgeted / random {regret['budgeted'] / regret['random']:.2f}, "
              f"budgeted / proxy_top_k {regret['budgeted'] / regret['proxy_top_k']:.2f}")  # fmt: skip
        cov = [coverage(t, budget, i) for i, t in enumerate(tables[:5])]
        print(f"  95% interval coverage of unrun pairs ({len(cov)} tables): {np.mean(cov):.3f}")


if __name__ == "__main__":
    main()
