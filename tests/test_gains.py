import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analysis.gains import gain_matrix, transfer_gains
from analysis.load import runs_frame


def _runs(seed=0):
    rng = np.random.default_rng(seed)
    records = []
    targets = [("a", "driving", "segmentation", "miou", "true"), ("b", "aerial", "depth", "abs_rel", "false")]
    for size in (16, 64):
        for s in (0, 1):
            for ds, dom, task, metric, hib in targets:
                common = {"target_dataset": ds, "target_domain": dom, "target_task": task, "target_size": str(size),
                          "seed": str(s), "init": "generic", "primary_metric": metric, "higher_is_better": hib,
                          "study": "x"}  # fmt: skip
                records.append(common | {"kind": "baseline", "source_dataset": "none", "source_domain": "none",
                                         "source_task": "none", "metrics": {metric: float(rng.uniform(0.2, 0.8))}})
                for sds, sdom, stask, *_ in targets:
                    for st in ("segmentation", "depth"):
                        if (sds, st) == (ds, task):
                            continue
                        records.append(common | {"kind": "transfer", "source_dataset": sds, "source_domain": sdom,
                                                 "source_task": st, "metrics": {metric: float(rng.uniform(0.2, 0.8))}})
    return runs_frame(records)


def test_gains_match_plain_pandas():
    runs = _runs()
    got = transfer_gains(runs)
    key = ["target_dataset", "target_task", "target_size", "seed", "init"]
    base = runs[runs.kind == "baseline"].set_index(key)["value"]
    rows = []
    for _, r in runs[runs.kind == "transfer"].iterrows():
        b = base.loc[tuple(r[k] for k in key)]
        sign = 1 if r["higher_is_better"] else -1
        rows.append({"source": f"{r.source_dataset}/{r.source_task}", "target": f"{r.target_dataset}/{r.target_task}",
                     "target_size": r.target_size, "seed": r.seed, "abs_gain": sign * (r.value - b),
                     "gain": sign * (r.value - b) / abs(b)})  # fmt: skip
    expected = pd.DataFrame(rows).sort_values(["target_size", "target", "source", "seed"]).reset_index(drop=True)
    assert len(got) == len(expected) == 2 * 2 * 2 * 3
    assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def test_lower_is_better_flips_sign():
    runs = _runs()
    depth = runs[(runs.target_task == "depth")]
    better = depth.kind == "transfer"
    runs.loc[depth.index[better], "value"] = 0.1  # every transfer has a lower error than any baseline
    g = transfer_gains(runs)
    assert (g[g.target_task == "depth"]["gain"] > 0).all()


def test_gain_matrix_means_over_seeds_grouped_by_domain():
    g = transfer_gains(_runs())
    mat = gain_matrix(g, 16)
    sub = g[g.target_size == 16]
    assert mat.loc["a/depth", "b/depth"] == pytest.approx(sub[(sub.source == "a/depth") & (sub.target == "b/depth")].gain.mean())
    assert list(mat.columns) == ["b/depth", "a/segmentation"]  # aerial before driving
    assert np.isnan(mat.loc["a/segmentation", "a/segmentation"])


def test_transfer_without_baseline_is_left_out():
    runs = _runs()
    runs = runs[~((runs.kind == "baseline") & (runs.target_dataset == "a"))]
    assert set(transfer_gains(runs)["target_dataset"]) == {"b"}
