"""Transfer gains: every transfer against the baseline of the same (target, size, seed, init).

    gain     = sign * (m(S->T) - m(B->T)) / |m(B->T)|
    abs_gain = sign * (m(S->T) - m(B->T))

with sign = +1 for higher-is-better metrics and -1 for lower-is-better ones,
so a positive gain always means the source helped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH = ["target_dataset", "target_task", "target_size", "seed", "init"]


def transfer_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per transfer run that has a baseline: its value, the baseline's, gain and abs_gain."""
    base = runs.loc[runs["kind"] == "baseline", [*MATCH, "value"]].rename(columns={"value": "baseline"})
    base = base.drop_duplicates(MATCH)
    cols = ["source_dataset", "source_domain", "source_task", "source_size", "source_domains", "multi_source",
            "target_domain", "primary_metric", "higher_is_better", "value"]  # fmt: skip
    tr = runs.loc[runs["kind"] == "transfer"].reindex(columns=[*MATCH, *cols])
    out = tr.merge(base, on=MATCH, how="inner")
    sign = np.where(out["higher_is_better"], 1.0, -1.0)
    out["abs_gain"] = sign * (out["value"] - out["baseline"])
    out["gain"] = out["abs_gain"] / out["baseline"].abs()
    out["source"] = out["source_dataset"] + "/" + out["source_task"]
    out["target"] = out["target_dataset"] + "/" + out["target_task"]
    order = ["source", "target", "source_dataset", "source_domain", "source_task", "source_size", "source_domains",
             "multi_source", "target_dataset", "target_domain",
             "target_task", "target_size", "seed", "init", "primary_metric", "higher_is_better", "value",
             "baseline", "abs_gain", "gain"]  # fmt: skip
    return out[order].sort_values(["target_size", "target", "source", "seed"]).reset_index(drop=True)


def gain_matrix(gains: pd.DataFrame, target_size: int) -> pd.DataFrame:
    """Mean gain over seeds, sources as rows and targets as columns (sorted by domain, then name)."""
    sub = gains[gains["target_size"] == target_size]
    mat = sub.pivot_table(index="source", columns="target", values="gain", aggfunc="mean")
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
    With one seed there is no interval and no noise estimate (NA).
    """
    rng = np.random.default_rng(seed)
    base = runs[runs["kind"] == "baseline"].groupby(["target_dataset", "target_task", "target_size", "init"])["value"]
    noise = (base.std(ddof=1) / base.mean().abs()).rename("seed_noise").reset_index()
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
    out = out.merge(noise, on=["target_dataset", "target_task", "target_size", "init"], how="left")
    has_ci = out["ci_low"].notna()
    within = (out["ci_low"] <= 0) & (out["ci_high"] >= 0) | (out["gain"].abs() < out["seed_noise"])
    out["within_noise"] = pd.array(np.where(has_ci, within, pd.NA), dtype="boolean")
    return out
