"""Mensink et al.'s findings, checked on any study: held, not held, or not testable, with the numbers.

    table = check_findings(runs, g, pairs, factors)

`runs` is the tidy frame of finished runs, `g` the gains with factor columns
(`factors.add_factors`), `pairs` the per-pair summary (`gains.summarize_gains`)
and `factors` the factor table (`factors.factor_tests`). A finding holds when
its effect has the expected sign and is significant at ALPHA (Holm-corrected
where it comes from the factor table); otherwise it is not held, and the
evidence says why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
HELD, NOT_HELD, NOT_TESTABLE = "held", "not held", "not testable"


def _row(finding: str, status: str, evidence: str) -> dict[str, str]:
    return {"finding": finding, "status": status, "evidence": evidence}


def _signed_wilcoxon(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if len(values) < 2 or not np.any(values != 0):
        return float("nan")
    return float(stats.wilcoxon(values).pvalue)


def _verdict(effect: float, p: float, expect_positive: bool = True) -> str:
    right_sign = effect > 0 if expect_positive else effect < 0
    return HELD if right_sign and p < ALPHA else NOT_HELD


def init_beats_scratch(runs: pd.DataFrame) -> dict[str, str]:
    name = "A generic or ImageNet init beats training from scratch"
    key = ["target_dataset", "target_task", "target_size", "seed"]
    base = runs[runs["kind"] == "baseline"].set_index(key)
    scratch = runs[runs["kind"] == "scratch"].set_index(key)
    both = base[["value", "higher_is_better"]].join(scratch[["value"]].rename(columns={"value": "value_scratch"}),
                                                    how="inner")  # fmt: skip
    if both.empty:
        return _row(name, NOT_TESTABLE, "no scratch runs to compare with (set `scratch: true` in the study)")
    sign = np.where(both["higher_is_better"], 1.0, -1.0)
    rel = sign * (both["value"] - both["value_scratch"]) / both["value_scratch"].abs()
    med, p = float(rel.median()), _signed_wilcoxon(rel.to_numpy(float))
    return _row(name, _verdict(med, p),
                f"median relative gain of the init over scratch {med:+.1%} over {len(rel)} targets "
                f"({int((rel > 0).sum())} positive), Wilcoxon p={p:.3g}")  # fmt: skip


def most_targets_have_a_helpful_source(pairs: pd.DataFrame) -> dict[str, str]:
    name = "Most targets have a source that beats the init"
    if pairs.empty:
        return _row(name, NOT_TESTABLE, "no transfer with a baseline")
    best = pairs.sort_values("gain", ascending=False).groupby(["target", "target_size", "init"]).head(1)
    helped = (best["gain"] > 0) & ~best["within_noise"].fillna(False).astype(bool)
    k, n = int(helped.sum()), len(best)
    note = "" if best["ci_low"].notna().any() else " (one seed: no interval, noise not estimated)"
    return _row(name, HELD if k > n / 2 else NOT_HELD,
                f"{k} of {n} targets have a source with a positive gain outside seed noise{note}")  # fmt: skip


def _factor(factors: pd.DataFrame, name: str) -> pd.Series | None:
    row = factors[factors["factor"] == name]
    return None if row.empty or not bool(row.iloc[0]["testable"]) else row.iloc[0]


def _factor_evidence(row: pd.Series) -> str:
    return (f"median gain {row['yes']} {row['median_yes']:+.1%} vs {row['no']} {row['median_no']:+.1%}, "
            f"effect {row['effect']:+.1%} [95% CI {row['ci_low']:+.1%}, {row['ci_high']:+.1%}], "
            f"Mann-Whitney p={row['mwu_p']:.3g} (Holm {row['p_holm']:.3g}), n={row['n_yes']}+{row['n_no']}")  # fmt: skip


def factor_finding(factors: pd.DataFrame, name: str, factor: str) -> dict[str, str]:
    row = _factor(factors, factor)
    if row is None:
        return _row(name, NOT_TESTABLE, f"the study has no transfers on one side of '{factor}'")
    return _row(name, _verdict(row["effect"], row["p_holm"]), _factor_evidence(row))


def domain_is_strongest(factors: pd.DataFrame) -> dict[str, str]:
    name = "The image domain is the strongest factor"
    dom = _factor(factors, "same_domain")
    if dom is None:
        return _row(name, NOT_TESTABLE, "all transfers share, or all differ in, their image domain")
    others = factors[factors["testable"] & ~factors["factor"].isin(["same_domain", "includes_target_domain"])]
    if others.empty:
        return _row(name, NOT_TESTABLE, "no other factor varies in this study")
    strongest = others.loc[others["effect"].abs().idxmax()]
    bigger = abs(dom["effect"]) > abs(strongest["effect"])
    status = HELD if bigger and dom["effect"] > 0 and dom["p_holm"] < ALPHA else NOT_HELD
    return _row(name, status, f"same-domain effect {dom['effect']:+.1%} (Holm p={dom['p_holm']:.3g}) vs the next "
                              f"strongest, {strongest['factor']}, {strongest['effect']:+.1%}")  # fmt: skip


def cross_task_can_be_positive(pairs: pd.DataFrame) -> dict[str, str]:
    name = "Transfer across task types can be positive"
    cross = pairs[pairs["source_task"] != pairs["target_task"]]
    if cross.empty:
        return _row(name, NOT_TESTABLE, "no transfer between different task types")
    if cross["ci_low"].notna().any():
        sure = cross[cross["ci_low"] > 0]
        best = cross.loc[cross["ci_low"].idxmax()]
        return _row(name, HELD if len(sure) else NOT_HELD,
                    f"{len(sure)} of {len(cross)} cross-task pairs have a 95% interval above 0; best "
                    f"{best['source']} -> {best['target']} {best['gain']:+.1%} "
                    f"[{best['ci_low']:+.1%}, {best['ci_high']:+.1%}]")  # fmt: skip
    best = cross.loc[cross["gain"].idxmax()]
    positive = int((cross["gain"] > 0).sum())
    return _row(name, HELD if positive else NOT_HELD,
                f"{positive} of {len(cross)} cross-task pairs have a positive gain (one seed: no interval); best "
                f"{best['source']} -> {best['target']} {best['gain']:+.1%}")  # fmt: skip


def same_task_same_domain_positive(g: pd.DataFrame) -> dict[str, str]:
    name = "Same task type and same image domain transfer strongly positive"
    sub = g[g["same_task"] & g["same_domain"]]["gain"].to_numpy(float)
    if len(sub) == 0:
        return _row(name, NOT_TESTABLE, "no transfer with the same task type within one image domain")
    med, p = float(np.median(sub)), _signed_wilcoxon(sub)
    return _row(name, _verdict(med, p), f"median gain {med:+.1%} over {len(sub)} transfers, Wilcoxon p={p:.3g}")


def effects_grow_for_small_targets(g: pd.DataFrame) -> dict[str, str]:
    name = "Effects grow for small targets"
    if g["small_target"].isna().all() or g["target_size"].nunique() < 2:
        return _row(name, NOT_TESTABLE, "the study has a single target size")
    size = g[g["small_target"].notna()].assign(mag=lambda d: d["gain"].abs())
    wide = size.groupby(["source", "target", "seed", "init", "small_target"])["mag"].mean().unstack().dropna()
    if True not in wide or False not in wide:
        return _row(name, NOT_TESTABLE, "no pair measured at both the smallest and the largest size")
    diff = (wide[True] - wide[False]).to_numpy(float)
    med, p = float(np.median(diff)), _signed_wilcoxon(diff)
    return _row(name, _verdict(med, p),
                f"|gain| at the smallest minus the largest target size: median {med:+.1%} over {len(diff)} "
                f"pairs, Wilcoxon p={p:.3g}")  # fmt: skip


def domain_matters_more_than_size(factors: pd.DataFrame) -> dict[str, str]:
    name = "Including the target's domain matters more than source size"
    inc, size = _factor(factors, "includes_target_domain"), _factor(factors, "source_larger")
    if inc is None or size is None:
        missing = "includes_target_domain" if inc is None else "source_larger"
        return _row(name, NOT_TESTABLE, f"'{missing}' does not vary in this study")
    status = HELD if abs(inc["effect"]) > abs(size["effect"]) and inc["p_holm"] < ALPHA else NOT_HELD
    return _row(name, status, f"includes-domain effect {inc['effect']:+.1%} (Holm p={inc['p_holm']:.3g}) vs "
                              f"source-larger effect {size['effect']:+.1%} (Holm p={size['p_holm']:.3g})")  # fmt: skip


def check_findings(runs: pd.DataFrame, g: pd.DataFrame, pairs: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """The nine findings of Mensink et al. as rows of finding, status, evidence."""
    return pd.DataFrame([
        init_beats_scratch(runs),
        most_targets_have_a_helpful_source(pairs),
        domain_is_strongest(factors),
        factor_finding(factors, "The source should include the target's image domain", "includes_target_domain"),
        cross_task_can_be_positive(pairs),
        same_task_same_domain_positive(g),
        factor_finding(factors, "Transfer flows from larger to smaller datasets", "source_larger"),
        effects_grow_for_small_targets(g),
        domain_matters_more_than_size(factors),
    ])  # fmt: skip
