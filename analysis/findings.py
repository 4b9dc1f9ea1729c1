"""Mensink et al.'s findings, checked on any study: held, not held, not enough evidence or not testable.

    table = check_findings(runs, g, pairs, factors)

`runs` is the tidy frame of finished runs, `g` the gains with factor columns
(`factors.add_factors`; with `included` from `gains.mark_gains` when some
transfers must not count), `pairs` the per-pair summary of the counted gains
(`gains.summarize_gains`) and `factors` the factor table of the counted gains
(`factors.factor_tests`).

The evidence rule (`EVIDENCE_RULE`, printed above the findings in the report):

- A finding is judged only on counted transfers: a defined gain, against a
  baseline that beats its target's trivial predictor (or has no reference run).
- Every test counts the units that replicate its question, not transfers:
  transfers from one source share its quality and transfers onto one target
  share its baseline. A factor is tested at the level where it varies (sources,
  pairs within targets, or targets: `factors` module) by permutation; a claim
  about the mean gain of a set of transfers by a t-test whose errors are
  clustered by source and by target; init against scratch by flipping signs
  per target.
- A test on a set of transfers needs at least MIN_TRANSFERS of them; a factor
  needs MIN_TRANSFERS on each side. Paired comparisons (init vs scratch, the
  same pair at two target sizes) count the same way. A factor also needs units
  enough that its permutation test can give p < ALPHA at all (6 sources split
  3 and 3 cannot: 20 arrangements, p >= 0.1); a mean, at least MIN_UNITS
  sources and MIN_UNITS targets; init vs scratch, targets enough that flipping
  their signs can give p < ALPHA (6).
- A claim about single (source, target) pairs needs at least MIN_SEEDS seeds
  per pair: it rests on the pair's 95% bootstrap interval over its seeds,
  which one seed cannot give.
- Held: the effect has the expected sign and p < ALPHA (Holm-corrected where
  it comes from the factor table), or for pair claims the interval says so.
  Otherwise, with enough data, not held.
- Not enough evidence: the study's design has the comparison, but too few
  counted transfers, units or seeds; the evidence says what is missing.
- Not testable: the study's design cannot vary the factor at all (e.g. one
  target size, no scratch runs, no multi-source source), whatever it runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.factors import FACTORS, crossed_mean_test, sign_flip_test
from analysis.gains import CHECK, baseline_check

ALPHA = 0.05
MIN_TRANSFERS = 8  # per tested set of transfers, or per side of a factor
MIN_SEEDS = 2  # per (source, target) pair, for claims about single pairs
MIN_UNITS = 4  # sources and targets, for a claim about the mean gain of a set of transfers
HELD, NOT_HELD, NOT_ENOUGH, NOT_TESTABLE = "held", "not held", "not enough evidence", "not testable"

EVIDENCE_RULE = (
    f"Each test counts the units that replicate its question, not transfers: transfers from one source share its "
    f"quality, transfers onto one target share its baseline. A factor is tested where it varies, by permuting its "
    f"labels across sources, among the sources of each target, or between a target's sizes; a claim about the mean "
    f"gain of a set of transfers by a t-test with errors clustered by source and by target; init against scratch "
    f"by flipping signs per target. A finding is held or not held only when its test has enough data: at least "
    f"{MIN_TRANSFERS} counted transfers (or paired comparisons) in the tested set (on each side, for a factor), "
    f"units enough for the test to reach p < {ALPHA} at all (a factor's permutations; {MIN_UNITS} sources and "
    f"{MIN_UNITS} targets for a mean), and at least {MIN_SEEDS} seeds per source-target pair for claims about "
    f"single pairs, which rest on the pair's 95% bootstrap interval over its seeds. It is held when the effect has "
    f"the expected sign at p < {ALPHA} (Holm-corrected over the factor table), or the interval excludes 0. With "
    f"less data it is 'not enough evidence', and the evidence says what is missing; 'not testable' means the "
    f"study's design does not vary the factor at all. Counted transfers have a defined gain against a baseline "
    f"that beats its target's trivial predictor."
)


def _row(finding: str, status: str, evidence: str) -> dict[str, str]:
    return {"finding": finding, "status": status, "evidence": evidence}


def _counted(g: pd.DataFrame) -> pd.DataFrame:
    """The transfers that count: `included` where marked, else every defined gain."""
    keep = g["included"].astype(bool) if "included" in g else pd.Series(True, index=g.index)
    return g[keep & g["gain"].notna()]


def _too_few(n: int, what: str) -> str:
    return f"{n} {what}; needs at least {MIN_TRANSFERS}"


def _seeds_missing(n_seeds: int) -> str:
    return f"{n_seeds} seed{'s' if n_seeds != 1 else ''}; needs at least {MIN_SEEDS} to separate a gain from seed noise"


LEFT_OUT = "undefined gain, or a baseline that does not beat its trivial predictor"


def _left_out(g: pd.DataFrame, mask: pd.Series) -> str:
    n = len(g[mask]) - len(_counted(g[mask]))
    return f" (plus {n} left out: {LEFT_OUT})" if n else ""


def _verdict(effect: float, p: float, expect_positive: bool = True) -> str:
    right_sign = effect > 0 if expect_positive else effect < 0
    return HELD if right_sign and p < ALPHA else NOT_HELD


def init_beats_scratch(runs: pd.DataFrame) -> dict[str, str]:
    name = "A generic or ImageNet init beats training from scratch"
    key = ["target_dataset", "target_task", "target_size", "seed"]
    if not (runs["kind"] == "scratch").any():
        return _row(name, NOT_TESTABLE, "no scratch runs to compare with (set `scratch: true` in the study)")
    check = baseline_check(runs)
    weak = check.loc[check["beats_reference"].eq(False).fillna(False), CHECK]
    base = runs[runs["kind"] == "baseline"].merge(weak, on=CHECK, how="left", indicator=True)
    base = base[base["_merge"] == "left_only"].set_index(key)
    scratch = runs[runs["kind"] == "scratch"].set_index(key)
    both = base[["value", "higher_is_better"]].join(scratch[["value"]].rename(columns={"value": "value_scratch"}),
                                                    how="inner")  # fmt: skip
    sign = np.where(both["higher_is_better"], 1.0, -1.0)
    rel = sign * (both["value"] - both["value_scratch"]) / both["value_scratch"].abs()
    rel = rel[np.isfinite(rel)]
    left = f" ({len(weak)} baselines left out: they do not beat the trivial predictor)" if len(weak) else ""
    if len(rel) < MIN_TRANSFERS:
        return _row(name, NOT_ENOUGH, _too_few(len(rel), "init/scratch comparisons with a defined gain") + left)
    targets = rel.index.get_level_values("target_dataset") + "/" + rel.index.get_level_values("target_task")
    test = sign_flip_test(rel.to_numpy(float), targets)
    if test["min_p"] >= ALPHA:
        return _row(name, NOT_ENOUGH, f"{test['n_clusters']} targets: flipping their signs cannot give p < {ALPHA} "
                                      f"(at best {test['min_p']:.2g}); needs at least 6 targets{left}")  # fmt: skip
    med = float(rel.median())
    return _row(name, _verdict(test["mean"], test["p"]),
                f"median relative gain of the init over scratch {med:+.1%} over {len(rel)} comparisons "
                f"({int((rel > 0).sum())} positive) on {test['n_clusters']} targets (the unit: a target's sizes "
                f"and seeds share it), mean {test['mean']:+.1%}, sign-flip p={test['p']:.3g}{left}")  # fmt: skip


def most_targets_have_a_helpful_source(pairs: pd.DataFrame, g: pd.DataFrame) -> dict[str, str]:
    name = "Most targets have a source that beats the init"
    if g.empty:
        return _row(name, NOT_TESTABLE, "no transfer with a baseline")
    if pairs.empty:
        return _row(name, NOT_ENOUGH, f"none of the {len(g)} transfers counts: {LEFT_OUT}")
    judged = pairs[pairs["n_seeds"] >= MIN_SEEDS]
    if judged.empty:
        return _row(name, NOT_ENOUGH, _seeds_missing(int(pairs["n_seeds"].max())))
    best = judged.sort_values("gain", ascending=False).groupby(["target", "target_size", "init"]).head(1)
    helped = (best["gain"] > 0) & ~best["within_noise"].fillna(True).astype(bool)
    k, n = int(helped.sum()), len(best)
    targets = pairs.groupby(["target", "target_size", "init"]).ngroups
    note = f" ({targets - n} targets with fewer than {MIN_SEEDS} seeds not judged)" if targets > n else ""
    return _row(name, HELD if k > n / 2 else NOT_HELD,
                f"{k} of {n} targets have a source with a 95% interval (over its seeds) above 0 and a gain above seed "
                f"noise{note}")  # fmt: skip


def _varies(g: pd.DataFrame, factor: str) -> bool:
    """Does the study's design put transfers on both sides of `factor` (counted or not)?"""
    return factor in g and g[factor].dropna().nunique() == 2


def _factor(factors: pd.DataFrame, name: str) -> pd.Series:
    return factors.set_index("factor").loc[name]


def _factor_gap(g: pd.DataFrame, factors: pd.DataFrame, factor: str) -> tuple[str, str] | None:
    """(status, evidence) when `factor` cannot be judged, None when it can."""
    if not _varies(g, factor):
        return NOT_TESTABLE, f"the study's design does not vary '{factor}': every transfer is on one side"
    row = _factor(factors, factor)
    if min(row["n_yes"], row["n_no"]) < MIN_TRANSFERS:
        left = _left_out(g, g[factor].notna())
        return NOT_ENOUGH, (f"{row['n_yes']} counted transfers '{row['yes']}' and {row['n_no']} '{row['no']}'; "
                            f"needs at least {MIN_TRANSFERS} on each side{left}")  # fmt: skip
    if pd.isna(row["p"]):
        return NOT_ENOUGH, (f"'{factor}' varies in a way no permutation of sources, pairs or targets covers "
                            f"(too few units on a side)")  # fmt: skip
    if row["min_p"] >= ALPHA:
        return NOT_ENOUGH, (f"{_units(row)}: its permutation test cannot give p < {ALPHA} whatever the gains "
                            f"({row['n_arrangements']:.0f} arrangements, p >= {row['min_p']:.2g}); needs more "
                            f"{row['unit'].split(' ')[0]}")  # fmt: skip
    return None


def _units(row: pd.Series) -> str:
    """The factor's units of replication, e.g. "6 sources (3 'same domain', 3 'different domain')"."""
    if row["unit"].startswith("targets ("):  # both conditions within each target
        return f"{row['n_units']} {row['unit']}"
    return f"{row['n_units']} {row['unit']} ({row['units_yes']} '{row['yes']}', {row['units_no']} '{row['no']}')"


def _factor_evidence(row: pd.Series) -> str:
    return (f"effect {row['effect']:+.1%} [95% CI {row['ci_low']:+.1%}, {row['ci_high']:+.1%}], permutation "
            f"p={row['p']:.3g} (Holm {row['p_holm']:.3g}) over {_units(row)}; median gain {row['yes']} "
            f"{row['median_yes']:+.1%} vs {row['no']} {row['median_no']:+.1%}, "
            f"n={row['n_yes']}+{row['n_no']} transfers")  # fmt: skip


def factor_finding(factors: pd.DataFrame, g: pd.DataFrame, name: str, factor: str) -> dict[str, str]:
    gap = _factor_gap(g, factors, factor)
    if gap is not None:
        return _row(name, *gap)
    row = _factor(factors, factor)
    return _row(name, _verdict(row["effect"], row["p_holm"]), _factor_evidence(row))


def domain_is_strongest(factors: pd.DataFrame, g: pd.DataFrame) -> dict[str, str]:
    name = "The image domain is the strongest factor"
    gap = _factor_gap(g, factors, "same_domain")
    if gap is not None:
        return _row(name, *gap)
    others = [f.name for f in FACTORS if f.name not in ("same_domain", "includes_target_domain") and _varies(g, f.name)]
    if not others:
        return _row(name, NOT_TESTABLE, "no other factor varies in this study")
    ready = [f for f in others if _factor_gap(g, factors, f) is None]
    if not ready:
        return _row(name, NOT_ENOUGH, f"no other factor has {MIN_TRANSFERS} counted transfers on each side "
                                      f"({', '.join(others)} vary)")  # fmt: skip
    dom = _factor(factors, "same_domain")
    table = factors.set_index("factor").loc[ready]
    strongest = table.loc[table["effect"].abs().idxmax()]
    bigger = abs(dom["effect"]) > abs(strongest["effect"])
    status = HELD if bigger and dom["effect"] > 0 and dom["p_holm"] < ALPHA else NOT_HELD
    unjudged = sorted(set(others) - set(ready))
    note = f"; not compared (too few transfers): {', '.join(unjudged)}" if unjudged else ""
    return _row(name, status, f"same-domain effect {dom['effect']:+.1%} (Holm p={dom['p_holm']:.3g}, over "
                              f"{_units(dom)}) vs the next strongest, {strongest.name}, "
                              f"{strongest['effect']:+.1%}{note}")  # fmt: skip


def cross_task_can_be_positive(pairs: pd.DataFrame, g: pd.DataFrame) -> dict[str, str]:
    name = "Transfer across task types can be positive"
    if not (g["source_task"] != g["target_task"]).any():
        return _row(name, NOT_TESTABLE, "no transfer between different task types")
    cross = pairs[pairs["source_task"] != pairs["target_task"]]
    if cross.empty:
        return _row(name, NOT_ENOUGH, f"no cross-task transfer counts: {LEFT_OUT}")
    judged = cross[cross["n_seeds"] >= MIN_SEEDS]
    if judged.empty:
        seeds, n = _seeds_missing(int(cross["n_seeds"].max())), len(cross)
        return _row(name, NOT_ENOUGH, f"{n} cross-task pair{'s' if n != 1 else ''} with at most {seeds}")
    sure = judged[judged["ci_low"] > 0]
    best = judged.loc[judged["ci_low"].idxmax()]
    return _row(name, HELD if len(sure) else NOT_HELD,
                f"{len(sure)} of {len(judged)} cross-task pairs have a 95% interval (over their seeds) above 0; best "
                f"{best['source']} -> {best['target']} {best['gain']:+.1%} "
                f"[{best['ci_low']:+.1%}, {best['ci_high']:+.1%}]")  # fmt: skip


def same_task_same_domain_positive(g: pd.DataFrame) -> dict[str, str]:
    name = "Same task type and same image domain transfer strongly positive"
    mask = g["same_task"].astype(bool) & g["same_domain"].astype(bool)
    if not mask.any():
        return _row(name, NOT_TESTABLE, "no transfer with the same task type within one image domain")
    sub = _counted(g[mask])
    if len(sub) < MIN_TRANSFERS:
        evidence = _too_few(len(sub), "counted same-task same-domain transfers") + _left_out(g, mask)
        return _row(name, NOT_ENOUGH, evidence)
    return _mean_finding(name, sub["gain"].to_numpy(float), sub["source"], sub["target"],
                         f"median gain {sub['gain'].median():+.1%} over {len(sub)} transfers")  # fmt: skip


def _mean_finding(name: str, values: np.ndarray, source: pd.Series, target: pd.Series, what: str) -> dict[str, str]:
    """Held when the mean of `values` is positive at p < ALPHA, its errors clustered by source and by target."""
    test = crossed_mean_test(values, source.to_numpy(), target.to_numpy())
    units = f"{test['n_sources']} sources and {test['n_targets']} targets"
    if min(test["n_sources"], test["n_targets"]) < MIN_UNITS:
        return _row(name, NOT_ENOUGH, f"{what}, from {units}; a mean over transfers that share sources and "
                                      f"targets needs at least {MIN_UNITS} of each")  # fmt: skip
    return _row(name, _verdict(test["mean"], test["p"]),
                f"{what} from {units}: mean {test['mean']:+.1%}, t-test clustered by source and target "
                f"p={test['p']:.3g} (df {test['df']})")  # fmt: skip


def _both_sizes(g: pd.DataFrame) -> pd.DataFrame:
    """|gain| of each (source, target, seed, init) measured at both the smallest (True) and largest (False) size."""
    size = g[g["small_target"].notna()].assign(mag=lambda d: d["gain"].abs())
    wide = size.groupby(["source", "target", "seed", "init", "small_target"])["mag"].mean().unstack()
    return wide.reindex(columns=[True, False]).dropna()


def effects_grow_for_small_targets(g: pd.DataFrame) -> dict[str, str]:
    name = "Effects grow for small targets"
    if g["target_size"].nunique() < 2:
        return _row(name, NOT_TESTABLE, "the study has a single target size")
    if _both_sizes(g.assign(gain=0.0)).empty:  # the design, whatever the gains
        return _row(name, NOT_TESTABLE, "no pair measured at both the smallest and the largest size")
    wide = _both_sizes(_counted(g))
    if len(wide) < MIN_TRANSFERS:
        return _row(name, NOT_ENOUGH, _too_few(len(wide), "counted pairs measured at both the smallest and the "
                                                          "largest size"))  # fmt: skip
    diff = (wide[True] - wide[False]).to_numpy(float)
    source, target = wide.index.get_level_values("source"), wide.index.get_level_values("target")
    return _mean_finding(name, diff, pd.Series(source), pd.Series(target),
                         f"|gain| at the smallest minus the largest target size: median {np.median(diff):+.1%} over "
                         f"{len(diff)} pairs and seeds")  # fmt: skip


def domain_matters_more_than_size(factors: pd.DataFrame, g: pd.DataFrame) -> dict[str, str]:
    name = "Including the target's domain matters more than source size"
    gaps = [gap for f in ("includes_target_domain", "source_larger") if (gap := _factor_gap(g, factors, f))]
    if gaps:
        status = NOT_TESTABLE if any(s == NOT_TESTABLE for s, _ in gaps) else NOT_ENOUGH
        return _row(name, status, "; ".join(e for s, e in gaps if s == status))
    inc, size = _factor(factors, "includes_target_domain"), _factor(factors, "source_larger")
    status = HELD if abs(inc["effect"]) > abs(size["effect"]) and inc["p_holm"] < ALPHA else NOT_HELD
    return _row(name, status, f"includes-domain effect {inc['effect']:+.1%} (Holm p={inc['p_holm']:.3g}) vs "
                              f"source-larger effect {size['effect']:+.1%} (Holm p={size['p_holm']:.3g})")  # fmt: skip


def check_findings(runs: pd.DataFrame, g: pd.DataFrame, pairs: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """The ten findings of Mensink et al. as rows of finding, status, evidence (see the module's evidence rule)."""
    return pd.DataFrame([
        init_beats_scratch(runs),
        most_targets_have_a_helpful_source(pairs, g),
        domain_is_strongest(factors, g),
        factor_finding(factors, g, "The source should include the target's image domain", "includes_target_domain"),
        cross_task_can_be_positive(pairs, g),
        same_task_same_domain_positive(g),
        factor_finding(factors, g, "Transfer flows from larger to smaller datasets", "source_larger"),
        effects_grow_for_small_targets(g),
        domain_matters_more_than_size(factors, g),
        factor_finding(factors, g, "A multi-source source transfers better than single sources", "multi_source"),
    ])  # fmt: skip
