"""Factors of influence: which properties of a (source, target) pair go with larger gains.

    g = add_factors(gains)          # boolean factor columns on each transfer
    table = factor_tests(g)         # effect size, bootstrap CI, Mann-Whitney U, Wilcoxon, Holm
    model = linear_model(g)         # gain ~ all factors jointly (OLS)

Each factor splits transfers into two groups (`yes` and `no`). The effect is
the difference of median gains (yes - no) with a percentile bootstrap 95%
interval; Mann-Whitney U compares the groups; the Wilcoxon signed-rank test
compares them within targets (paired by target, size, seed and init, or for
the target-size factor by source, target and seed); Holm corrects the
Mann-Whitney p-values over the family. A factor whose groups are not both
present is `testable = False`. Undefined (NaN) gains are dropped first; the
caller leaves out the transfers that must not count (`gains.mark_gains`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

TARGET = ["target", "target_size", "seed", "init"]


@dataclass(frozen=True)
class Factor:
    name: str
    question: str
    yes: str
    no: str
    pair_by: tuple[str, ...] = tuple(TARGET)


FACTORS = (
    Factor("same_domain", "same vs different image domain", "same domain", "different domain"),
    Factor("same_task", "same vs different task type", "same task type", "different task type"),
    Factor("includes_target_domain", "source includes the target's domain", "includes", "excludes"),
    Factor("source_larger", "source larger than target", "source larger", "source smaller or equal"),
    Factor("small_target", "target training size (smallest vs largest)", "smallest target size",
           "largest target size", ("source", "target", "seed", "init")),
    Factor("multi_source", "multi-source vs single source", "multi-source", "single source"),
    Factor("generic_init", "init: generic or ImageNet vs scratch", "generic/imagenet", "scratch"),
)  # fmt: skip


def add_factors(gains: pd.DataFrame) -> pd.DataFrame:
    """`gains` with one nullable boolean column per factor (NA where a factor does not apply)."""
    g = gains.copy()
    g["same_domain"] = g["source_domain"] == g["target_domain"]
    g["same_task"] = g["source_task"] == g["target_task"]
    domains = g.get("source_domains", g["source_domain"]).fillna(g["source_domain"]).astype(str)
    g["includes_target_domain"] = [t in d.split(",") for d, t in zip(domains, g["target_domain"], strict=True)]
    size = pd.to_numeric(g.get("source_size", pd.Series(np.nan, index=g.index)), errors="coerce")
    g["source_larger"] = pd.array(np.where(size.isna(), pd.NA, size > g["target_size"].astype(float)), "boolean")
    sizes = g["target_size"]
    small = pd.Series(pd.NA, index=g.index, dtype="boolean")
    if sizes.nunique() > 1:
        small[sizes == sizes.min()] = True
        small[sizes == sizes.max()] = False
    g["small_target"] = small
    multi = g.get("multi_source", pd.Series("false", index=g.index)).astype(str) == "true"
    g["multi_source"] = multi
    g["generic_init"] = g["init"] != "scratch"
    return g


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok])]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _median_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    da = np.median(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1)
    db = np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
    return float(np.percentile(da - db, 2.5)), float(np.percentile(da - db, 97.5))


def compare(g: pd.DataFrame, factor: Factor, n_boot: int, rng: np.random.Generator) -> dict:
    """One factor's row of the factor table."""
    col = g[factor.name]
    a = g.loc[col == True, "gain"].to_numpy(float)  # noqa: E712  (nullable booleans)
    b = g.loc[col == False, "gain"].to_numpy(float)  # noqa: E712
    row = {"factor": factor.name, "question": factor.question, "yes": factor.yes, "no": factor.no,
           "n_yes": len(a), "n_no": len(b), "testable": len(a) > 0 and len(b) > 0}  # fmt: skip
    nan = float("nan")
    row |= {"median_yes": float(np.median(a)) if len(a) else nan, "median_no": float(np.median(b)) if len(b) else nan,
            "effect": nan, "ci_low": nan, "ci_high": nan, "mwu_p": nan, "n_pairs": 0, "wilcoxon_p": nan}  # fmt: skip
    if not row["testable"]:
        return row
    row["effect"] = row["median_yes"] - row["median_no"]
    row["ci_low"], row["ci_high"] = _median_diff_ci(a, b, n_boot, rng)
    if len(a) > 1 or len(b) > 1:
        row["mwu_p"] = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    paired = g[col.notna()].groupby([*factor.pair_by, factor.name])["gain"].mean().unstack(factor.name)
    paired = paired.dropna()
    if True in paired.columns and False in paired.columns:
        diff = (paired[True] - paired[False]).to_numpy(float)
        row["n_pairs"] = len(diff)
        if len(diff) >= 2 and np.any(diff != 0):
            row["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
    return row


def factor_tests(g: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The factor table: one row per factor of `FACTORS`, Holm-corrected over the testable ones."""
    rng = np.random.default_rng(seed)
    g = g[g["gain"].notna()]
    table = pd.DataFrame([compare(g, f, n_boot, rng) for f in FACTORS])
    table["p_holm"] = holm(table["mwu_p"].to_numpy())
    return table


def linear_model(g: pd.DataFrame) -> pd.DataFrame:
    """OLS of gain on every factor that varies (and the log target size), jointly.

    Returns one row per term: coef, standard error, t, two-sided p and n. Undefined (NaN) gains are dropped.
    """
    g = g[g["gain"].notna()]
    terms = {}
    for f in ("same_domain", "same_task", "includes_target_domain", "source_larger", "multi_source", "generic_init"):
        col = g[f].astype("float")
        if col.notna().all() and col.nunique() > 1:
            terms[f] = col.to_numpy()
    logsize = np.log(g["target_size"].astype(float).to_numpy())
    if np.unique(logsize).size > 1:
        terms["log_target_size"] = logsize
    X = np.column_stack([np.ones(len(g)), *terms.values()]) if len(g) else np.zeros((0, 1))
    names = ["intercept", *terms]
    y = g["gain"].to_numpy(float)
    # drop terms collinear with earlier ones (e.g. same_domain == includes_target_domain for single sources)
    keep = []
    for j in range(X.shape[1]):
        if np.linalg.matrix_rank(X[:, [*keep, j]]) == len(keep) + 1:
            keep.append(j)
    X, names = X[:, keep], [names[j] for j in keep]
    n, k = X.shape
    if n <= k:
        return pd.DataFrame(columns=["term", "coef", "se", "t", "p", "n"])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    sigma2 = resid @ resid / (n - k)
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ X)))
    t = coef / se
    p = 2 * stats.t.sf(np.abs(t), df=n - k)
    return pd.DataFrame({"term": names, "coef": coef, "se": se, "t": t, "p": p, "n": n})
