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
    cols = ["source_dataset", "source_domain", "source_task", "target_domain", "primary_metric",
            "higher_is_better", "value"]  # fmt: skip
    tr = runs.loc[runs["kind"] == "transfer", [*MATCH, *cols]]
    out = tr.merge(base, on=MATCH, how="inner")
    sign = np.where(out["higher_is_better"], 1.0, -1.0)
    out["abs_gain"] = sign * (out["value"] - out["baseline"])
    out["gain"] = out["abs_gain"] / out["baseline"].abs()
    out["source"] = out["source_dataset"] + "/" + out["source_task"]
    out["target"] = out["target_dataset"] + "/" + out["target_task"]
    order = ["source", "target", "source_dataset", "source_domain", "source_task", "target_dataset", "target_domain",
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
