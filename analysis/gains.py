"""Transfer gains: every transfer against the baseline of the same (target, size, seed, init).

    gain     = sign * (m(S->T) - m(B->T)) / |m(B->T)|
    abs_gain = sign * (m(S->T) - m(B->T))

with sign = +1 for higher-is-better metrics and -1 for lower-is-better ones,
so a positive gain always means the source helped. The relative gain is
undefined (NaN) when the baseline's metric is 0 or missing, or the
transfer's is missing; `undefined_gains` lists those transfers and why.

A gain counts only against a baseline that beats its target's trivial
predictor (the `reference` job: a predictor fitted on the same training
subset, e.g. each pixel's majority class). `baseline_check` compares them per
target; `mark_gains` keeps every transfer in the gains table and marks the
ones left out of the statistics (`included` False, `excluded` saying why):
heatmaps show every transfer, factor tests, the joint model and the findings
count only the included ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH = ["target_dataset", "target_task", "target_size", "seed", "init"]
CHECK = ["target_dataset", "target_task", "target_size", "init"]  # one baseline check per target, size and init
NO_REFERENCE = "no reference run"


def _direction(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def _why_undefined(value: pd.Series, baseline: pd.Series, metric: pd.Series) -> pd.Series:
    """Why each relative gain is undefined ('' where it is defined)."""
    why = np.select(
        [baseline.isna(), baseline == 0, value.isna()],
        ["the baseline logged no " + metric, "the baseline's " + metric + " is 0: a relative gain divides by it",
         "the transfer logged no " + metric],
        "",
    )  # fmt: skip
    return pd.Series(why, index=value.index, dtype=object)


def transfer_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per transfer run that has a baseline: its value, the baseline's, gain and abs_gain.

    `gain` is NaN where it is undefined (a baseline metric of 0 or NaN, or no transfer metric).
    """
    base = runs.loc[runs["kind"] == "baseline", [*MATCH, "value"]].rename(columns={"value": "baseline"})
    base = base.drop_duplicates(MATCH)
    cols = ["source_dataset", "source_domain", "source_task", "source_size", "source_domains", "multi_source",
            "target_domain", "primary_metric", "higher_is_better", "value"]  # fmt: skip
    tr = runs.loc[runs["kind"] == "transfer"].reindex(columns=[*MATCH, *cols])
    out = tr.merge(base, on=MATCH, how="inner")
    sign = np.where(out["higher_is_better"], 1.0, -1.0)
    out["abs_gain"] = sign * (out["value"] - out["baseline"])
    defined = _why_undefined(out["value"], out["baseline"], out["primary_metric"].astype(str)) == ""
    out["gain"] = (out["abs_gain"] / out["baseline"].abs()).where(defined)
    out["source"] = out["source_dataset"] + "/" + out["source_task"]
    out["target"] = out["target_dataset"] + "/" + out["target_task"]
    order = ["source", "target", "source_dataset", "source_domain", "source_task", "source_size", "source_domains",
             "multi_source", "target_dataset", "target_domain",
             "target_task", "target_size", "seed", "init", "primary_metric", "higher_is_better", "value",
             "baseline", "abs_gain", "gain"]  # fmt: skip
    return out[order].sort_values(["target_size", "target", "source", "seed"]).reset_index(drop=True)


def baseline_check(runs: pd.DataFrame) -> pd.DataFrame:
    """Does each baseline beat its target's trivial predictor? One row per (target_dataset, target_task,
    target_size, init).

    Columns: the key, primary_metric, higher_is_better, baseline and reference (means over seeds), seeds (the
    baseline's), beats_reference (nullable boolean: strictly better in the metric's direction; NA without a
    reference run or a value to compare) and reason (in words, with the numbers). A trivial predictor does not
    depend on the init, so references match on target dataset, task and size.
    """
    cols = [*CHECK, "primary_metric", "higher_is_better", "baseline", "reference", "seeds", "beats_reference", "reason"]
    base = runs[runs["kind"] == "baseline"]
    out = base.groupby(CHECK, sort=True).agg(
        primary_metric=("primary_metric", "first"), higher_is_better=("higher_is_better", "first"),
        baseline=("value", "mean"), seeds=("seed", "nunique"),
    ).reset_index()
    refs = runs[runs["kind"] == "reference"].groupby(CHECK[:3])["value"]
    ref = refs.mean().rename("reference").reset_index().assign(has_reference=True)
    out = out.merge(ref, on=CHECK[:3], how="left")
    b, r, hib = out["baseline"], out["reference"], out["higher_is_better"].astype(bool)
    comparable = b.notna() & r.notna()
    beats = np.where(hib, b > r, b < r)
    out["beats_reference"] = pd.array(np.where(comparable, beats, pd.NA), dtype="boolean")
    reasons = []
    for row in out.itertuples(index=False):
        m = row.primary_metric
        if pd.isna(row.has_reference):
            reasons.append(NO_REFERENCE)
        elif pd.isna(row.reference):
            reasons.append(f"the reference logged no {m}")
        elif pd.isna(row.baseline):
            reasons.append(f"the baseline logged no {m}")
        else:
            verb = "beats" if row.beats_reference else "does not beat"
            reasons.append(f"baseline {m} {row.baseline:.3g} {verb} the trivial predictor's {row.reference:.3g} "
                           f"({_direction(row.higher_is_better)})")  # fmt: skip
    out["reason"] = pd.Series(reasons, index=out.index, dtype=object)
    return out[cols]


def mark_gains(gains: pd.DataFrame, check: pd.DataFrame) -> pd.DataFrame:
    """`gains` with beats_reference (from `baseline_check`), `included` (counts in the statistics) and `excluded`
    (why not: its target's baseline does not beat the trivial predictor, or its gain is undefined; '' if included)."""
    out = gains.drop(columns=["beats_reference", "included", "excluded"], errors="ignore")
    out = out.merge(check[[*CHECK, "beats_reference", "reason"]], on=CHECK, how="left")
    undefined = _why_undefined(out["value"], out["baseline"], out["primary_metric"].astype(str))
    flagged = out["beats_reference"].fillna(True).eq(False).to_numpy()
    out["excluded"] = np.where(flagged, out["reason"].fillna(""), undefined)
    out["included"] = out["excluded"] == ""
    return out.drop(columns="reason")


def undefined_gains(runs: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """Transfers with no relative gain: transfer, target_size, seed, init, value, baseline and why.

    Why: the baseline's metric is 0 or missing, the transfer's is missing, or there is no finished baseline
    of the same target, size, seed and init at all (such transfers are not in `gains`).
    """
    cols = ["transfer", "target_size", "seed", "init", "value", "baseline", "why"]
    und = gains[gains["gain"].isna()].copy()
    und["why"] = _why_undefined(und["value"], und["baseline"], und["primary_metric"].astype(str))
    keys = runs.loc[runs["kind"] == "baseline", MATCH].drop_duplicates()
    orphan = runs[runs["kind"] == "transfer"].merge(keys, on=MATCH, how="left", indicator=True)
    orphan = orphan[orphan["_merge"] == "left_only"].assign(
        source=lambda d: d["source_dataset"] + "/" + d["source_task"],
        target=lambda d: d["target_dataset"] + "/" + d["target_task"], baseline=np.nan,
        why="no finished baseline of this target, size, seed and init")  # fmt: skip
    parts = [d.assign(transfer=d["source"] + " -> " + d["target"])[cols] for d in (und, orphan) if len(d)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return out.sort_values(["transfer", "target_size", "seed"]).reset_index(drop=True)


def gain_matrix(gains: pd.DataFrame, target_size: int) -> pd.DataFrame:
    """Mean gain over seeds, sources as rows and targets as columns (sorted by domain, then name).

    A pair whose gains are all undefined stays, as NaN; so does a pair never run.
    """
    sub = gains[gains["target_size"] == target_size]
    mat = sub.groupby(["source", "target"])["gain"].mean().unstack("target")
    src_dom = sub.drop_duplicates("source").set_index("source")["source_domain"]
    tgt_dom = sub.drop_duplicates("target").set_index("target")["target_domain"]
    rows = sorted(mat.index, key=lambda s: (src_dom[s], s))
    cols = sorted(mat.columns, key=lambda t: (tgt_dom[t], t))
    return mat.loc[rows, cols]


PAIR = ["source", "target", "source_dataset", "source_domain", "source_task", "target_dataset", "target_domain",
        "target_task", "target_size", "init"]  # fmt: skip


def summarize_gains(gains: pd.DataFrame, runs: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean gain over seeds per (source, target, size, init), with a bootstrap 95% interval.

    `seed_noise` is the spread of the baseline's metric over seeds, relative to
    its mean (the gain a source could show by luck); `within_noise` flags a
    pair whose interval contains 0 or whose |mean gain| is below that noise.
    With one seed there is no interval and no noise estimate (NA). Undefined
    (NaN) gains do not count: `n_seeds` is the number of defined ones.
    """
    rng = np.random.default_rng(seed)
    gains = gains[gains["gain"].notna()]
    base = runs[runs["kind"] == "baseline"].groupby(CHECK)["value"]
    noise = (base.std(ddof=1) / base.mean().abs()).replace(np.inf, np.nan).rename("seed_noise").reset_index()
    grouped = gains.groupby(PAIR, sort=True)
    out = grouped.agg(gain=("gain", "mean"), abs_gain=("abs_gain", "mean"), n_seeds=("gain", "size")).reset_index()
    out["ci_low"] = out["ci_high"] = np.nan
    # groups of one size share one set of resampled seed indices: [groups, n_boot] means in one step
    values = grouped["gain"].agg(list)
    sizes = values.map(len).to_numpy()
    for k in np.unique(sizes[sizes >= 2]):
        rows = np.flatnonzero(sizes == k)
        vals = np.array([values.iloc[i] for i in rows], float)  # [G, k]
        means = vals[:, rng.integers(0, k, (n_boot, k))].mean(-1)  # [G, n_boot]
        out.loc[rows, "ci_low"] = np.percentile(means, 2.5, axis=1)
        out.loc[rows, "ci_high"] = np.percentile(means, 97.5, axis=1)
    out = out.merge(noise, on=CHECK, how="left")
    has_ci = out["ci_low"].notna()
    within = (out["ci_low"] <= 0) & (out["ci_high"] >= 0) | (out["gain"].abs() < out["seed_noise"])
    out["within_noise"] = pd.array(np.where(has_ci, within, pd.NA), dtype="boolean")
    return out
