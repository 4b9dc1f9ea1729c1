"""Proxy quality: how well each transferability proxy ranks the sources of each target, judged by measured values.

    q = proxy_quality(table, higher_is_better=True)          # table: target, source, value, proxy.NAME, ...
    q.per_target    # one row per (target, proxy): kendall_tau, weighted_tau, pearson, top1_hit, top3_hit
    q.summary       # one row per proxy: the mean and sd of each over targets (per `by` group if given)

Scored per target, across its sources, with the value sign-adjusted so that higher is better (as every proxy is):

- `kendall_tau`: Kendall's tau-b (as `scipy.stats.kendalltau`, `kendall_tau_b` here) between the proxy and the value;
- `weighted_tau`: `scipy.stats.weightedtau` (hyperbolic weights, ranks from both orderings averaged), which weighs
  agreement among the best sources most, as Agostinelli et al. (ECCV 2022) argue source ranking should be judged;
- `pearson`: the linear correlation;
- `top1_hit`: 1 if the proxy's top source is the true best one (any of them, if tied), 0 if not;
- `top3_hit`: 1 if the true best source is in the proxy's top 3.

Ties in a proxy are broken at random in expectation (a top-1 shared by 2 sources, one of them the best, hits 0.5);
a constant proxy has NaN correlations. Besides the `proxy.NAME` columns (named without the prefix) the rankers are:

- `combined`: the mean of the proxies' per-target z-scores (`policy.combined_score`);
- `popularity`: a source-popularity prior, leave-one-target-out: a source's mean percentile rank of value on the
  other targets (0.5 for a source measured on no other target);
- `random`: a uniformly random ranking, each metric the mean over `random_draws` seeded permutations (its
  expectation, not one draw).

Targets with fewer than 2 sources are left out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import weightedtau

from analysis.policy import check_table, combined_score, proxy_columns

SCORES = ("kendall_tau", "weighted_tau", "pearson", "top1_hit", "top3_hit")


@dataclass(frozen=True)
class ProxyQuality:
    """`per_target`: [by], target, proxy, n_sources and the SCORES; `summary`: [by], proxy, n_targets and
    `<score>_mean`, `<score>_sd` (sd over targets, ddof 1) for each score."""

    per_target: pd.DataFrame
    summary: pd.DataFrame


def _hit(score: np.ndarray, truth: np.ndarray, k: int) -> float:
    """The probability that a true-best source is in the top k of `score`, ties in `score` broken at random
    (the best of the true-best sources, if the truth is tied)."""
    best = []
    for b in np.flatnonzero(truth == truth.max()):
        above, tied = int((score > score[b]).sum()), int((score == score[b]).sum())
        best.append(min(max(k - above, 0), tied) / tied)
    return float(max(best))


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of two [n] arrays, as `scipy.stats.kendalltau` (default variant) without its p-value:
    sum over pairs of sign(dx) sign(dy) / sqrt(pairs untied in x * pairs untied in y); NaN if either is constant.
    O(n^2) memory: meant for the sources of one target."""
    i, j = np.triu_indices(len(x), 1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    den = np.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float((dx * dy).sum() / den) if den > 0 else np.nan


def _scores(score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():  # constant input: NaN, said in the docstring
        warnings.simplefilter("ignore")
        constant = np.ptp(score) == 0 or np.ptp(truth) == 0
        return {
            "kendall_tau": kendall_tau_b(score, truth),
            "weighted_tau": float(weightedtau(truth, score).statistic),
            "pearson": np.nan if constant else float(np.corrcoef(score, truth)[0, 1]),
            "top1_hit": _hit(score, truth, 1),
            "top3_hit": _hit(score, truth, 3),
        }


def _popularity(tab: pd.DataFrame, truth: pd.Series) -> pd.Series:
    """Per pair, the source's mean percentile rank of value on the other targets (0.5 where it has none)."""
    pct = truth.groupby(tab["target"]).rank(pct=True)
    total = pct.groupby(tab["source"]).transform("sum")
    count = pct.groupby(tab["source"]).transform("count")
    return ((total - pct) / (count - 1)).where(count > 1, 0.5)


def proxy_quality(table: pd.DataFrame, higher_is_better: bool = True, by: str | None = None, seed: int = 0,
                  random_draws: int = 20) -> ProxyQuality:  # fmt: skip
    """Score every proxy of a complete `table` (target, source, value, proxy.NAME, ...; `policy.check_table`)
    against the values, per target, with the combined score, the popularity prior and random as baselines.

    `by` names a column of `table` constant within each target (e.g. the target's task type): the summary is then
    per (by, proxy). Random's permutations come from numpy Generator `seed`. Returns `ProxyQuality`.
    """
    tab = check_table(table)
    if by is not None:
        if by not in table.columns:
            raise ValueError(f"by: no column {by!r} in the table; expected one of {list(table.columns)}")
        tab[by] = table[by].astype(str).to_numpy()
        if (tab.groupby("target")[by].nunique() > 1).any():
            raise ValueError(f"by: column {by!r} varies within a target; expected one value per target")
    truth = tab["value"] * (1.0 if higher_is_better else -1.0)
    rankers = {c[len("proxy.") :]: tab[c] for c in proxy_columns(tab)}
    rankers["combined"] = combined_score(tab)
    rankers["popularity"] = _popularity(tab, truth)
    rng = np.random.default_rng(seed)
    rows = []
    for target, idx in tab.sort_values(["target", "source"]).groupby("target", sort=True).groups.items():
        if len(idx) < 2:
            continue
        y = truth.loc[idx].to_numpy()
        head = {**({by: tab.loc[idx[0], by]} if by else {}), "target": target, "n_sources": len(idx)}
        for name, score in rankers.items():
            s = score.loc[idx].to_numpy()
            ok = np.isfinite(s)
            rows.append({**head, "proxy": name, **(_scores(s[ok], y[ok]) if ok.sum() >= 2 else {})})
        draws = [_scores(rng.permutation(len(idx)).astype(np.float64), y) for _ in range(random_draws)]
        rows.append({**head, "proxy": "random", **{k: float(np.nanmean([d[k] for d in draws])) for k in SCORES}})
    keys = [*([by] if by else []), "target", "proxy", "n_sources"]
    per_target = pd.DataFrame(rows, columns=[*keys, *SCORES])
    group = [*([by] if by else []), "proxy"]
    stats = per_target.groupby(group, sort=False)[list(SCORES)].agg(["mean", "std"])
    stats.columns = [f"{score}_{'sd' if stat == 'std' else stat}" for score, stat in stats.columns]
    n = per_target.groupby(group, sort=False)["target"].nunique().rename("n_targets")
    summary = pd.concat([n, stats], axis=1).reset_index()
    return ProxyQuality(per_target=per_target, summary=summary)


PROXY_METRICS = ("logme", "gbc", "hscore", "hscore_shrunk", "domain_similarity")


def pairs_table(runs: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """Every pair a finished proxy run scored, one row per (source, target, size, seed, init), with its transfer's
    value where the transfer finished (NaN where it did not: a budgeted sweep predicts those).

    `runs`: the tidy runs frame (analysis.load), whose `proxy` runs carry the proxies as `metric.NAME`; `gains`:
    analysis.gains.transfer_gains (or mark_gains: `included` and `excluded` are kept). Columns: `target` (the
    target with its size and seed, `city/depth n=48 seed=0`: sources are ranked per such target), `task` (the
    target's task type), `source`, `value` (the transfer's metric minus its baseline's, sign-adjusted: metric
    units, higher is better; `abs_gain` in analysis/gains.py), `gain` (relative), [`included`, `excluded`],
    `proxy.NAME` for each proxy the runs logged, and `same_domain`, `same_task`, `source_size`; sorted by target
    and source. Empty when the study ran no proxy.
    """
    cols = [f"metric.{m}" for m in PROXY_METRICS if f"metric.{m}" in runs]
    key = ["source_dataset", "source_task", "target_dataset", "target_task", "target_size", "seed", "init"]
    proxies = runs[(runs["kind"] == "proxy") & (runs["status"] == "FINISHED")]
    if proxies.empty or not cols:
        return pd.DataFrame(columns=["target", "task", "source", "value", "gain",
                                     *[f"proxy.{m}" for m in PROXY_METRICS]])  # fmt: skip
    meta = ["source_domain", "target_domain", "source_size"]
    proxies = proxies[[*key, *meta, *cols]].drop_duplicates(key, keep="last")
    proxies = proxies.rename(columns={c: "proxy." + c.removeprefix("metric.") for c in cols})
    marks = [c for c in ("included", "excluded") if c in gains]
    measured = gains[[*key, "abs_gain", "gain", *marks]].drop_duplicates(key, keep="last")
    both = proxies.merge(measured, on=key, how="left")
    out = pd.DataFrame({
        "target": both["target_dataset"] + "/" + both["target_task"] + " n=" + both["target_size"].astype(str)
                  + " seed=" + both["seed"].astype(str),
        "task": both["target_task"], "source": both["source_dataset"] + "/" + both["source_task"],
        "value": both["abs_gain"].astype(float), "gain": both["gain"].astype(float),
        **{c: both[c] for c in marks},
        "same_domain": both["source_domain"] == both["target_domain"],
        "same_task": both["source_task"] == both["target_task"],
        "source_size": pd.to_numeric(both["source_size"], errors="coerce"),
    })  # fmt: skip
    if "included" in out:
        out["included"] = out["included"].astype("boolean")
    for c in proxies.columns:
        if c.startswith("proxy."):
            out[c] = both[c].astype(float)
    return out.sort_values(["target", "source"]).reset_index(drop=True)


def proxy_table(runs: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """The table `proxy_quality` and `tmx replay` read, from a study's runs: `pairs_table`'s rows whose transfer
    has a defined gain (and, when `gains` has an `included` column, counts: its baseline beats the trivial
    predictor). `value` is in metric units (the transfer's metric minus its baseline's, sign-adjusted), so a
    replay's regret is too."""
    table = pairs_table(runs, gains)
    keep = table["gain"].notna()
    if "included" in table:
        keep &= table["included"].fillna(False).astype(bool)
    return table[keep].drop(columns=[c for c in ("included", "excluded") if c in table]).reset_index(drop=True)
