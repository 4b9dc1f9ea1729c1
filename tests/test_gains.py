import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analysis.gains import baseline_check, gain_matrix, mark_gains, transfer_gains, undefined_gains
from analysis.load import runs_frame
from analysis.simulate import simulate_runs


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


def test_zero_or_missing_baseline_makes_the_gain_undefined():
    runs = _runs()
    base = runs[(runs.kind == "baseline") & (runs.target_size == 16) & (runs.seed == 0)]
    zero, nan = base.index[base.target_dataset == "a"], base.index[base.target_dataset == "b"]
    runs.loc[zero, "value"], runs.loc[nan, "value"] = 0.0, np.nan
    gone = (runs.kind == "baseline") & (runs.target_size == 64) & (runs.seed == 1) & (runs.target_dataset == "a")
    runs = runs[~gone]
    g = transfer_gains(runs)
    hit = (g.target_size == 16) & (g.seed == 0)
    assert g.loc[hit, "gain"].isna().all() and g.loc[~hit, "gain"].notna().all()
    und = undefined_gains(runs, g)
    assert len(und) == 3 + 3 + 3  # three transfers onto each target: a's zero, b's NaN, a's missing baseline
    why = und.groupby("why").size()
    assert why["the baseline's miou is 0: a relative gain divides by it"] == 3
    assert why["the baseline logged no abs_rel"] == 3
    assert why["no finished baseline of this target, size, seed and init"] == 3
    assert set(und.loc[und.why.str.startswith("no finished"), "transfer"]) == {"a/depth -> a/segmentation",
                                                                               "b/depth -> a/segmentation",
                                                                               "b/segmentation -> a/segmentation"}
    assert und.loc[und.why.str.contains("is 0"), "baseline"].eq(0).all()


def _plain_check(runs):
    """baseline_check by hand: per target, size and init, means over seeds, compared in the metric's direction."""
    key = ["target_dataset", "target_task", "target_size", "init"]
    rows = []
    for k, b in runs[runs.kind == "baseline"].groupby(key):
        ref = runs[(runs.kind == "reference") & (runs.target_dataset == k[0]) & (runs.target_task == k[1])
                   & (runs.target_size == k[2])]["value"]  # fmt: skip
        hib = bool(b.higher_is_better.iloc[0])
        beats = pd.NA if ref.empty else bool(b.value.mean() > ref.mean() if hib else b.value.mean() < ref.mean())
        rows.append(dict(zip(key, k, strict=True)) | {"baseline": b.value.mean(), "reference": ref.mean(),
                                                      "seeds": b.seed.nunique(), "beats_reference": beats})  # fmt: skip
    return pd.DataFrame(rows).astype({"beats_reference": "boolean"})


def test_baseline_check_matches_plain_pandas_and_flags_the_weak_target():
    runs = simulate_runs(0, seeds=2, weak_target="dri0/depth")
    runs = runs[~((runs.kind == "reference") & (runs.target_dataset == "aer1"))]  # a target without references
    got = baseline_check(runs)
    expected = _plain_check(runs)
    assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    weak = got[got.beats_reference.eq(False).fillna(False)]
    assert set(weak.target_dataset + "/" + weak.target_task) == {"dri0/depth"} and len(weak) == 2  # both sizes
    assert weak.reason.str.match(r"baseline abs_rel 0\.\d+ does not beat the trivial predictor's 0\.\d+ "
                                 r"\(lower is better\)").all()  # fmt: skip
    none = got[got.target_dataset == "aer1"]
    assert none.beats_reference.isna().all() and (none.reason == "no reference run").all()
    assert got.beats_reference.eq(True).sum() == len(got) - 2 - len(none)


def test_mark_gains_leaves_out_weak_targets_and_undefined_gains_only():
    runs = simulate_runs(0, seeds=2, weak_target="dri0/depth")
    runs = runs[~((runs.kind == "reference") & (runs.target_dataset == "aer1"))]
    one = runs.index[(runs.kind == "baseline") & (runs.target_dataset == "und0") & (runs.target_task == "segmentation")
                     & (runs.target_size == 16) & (runs.seed == 1)]  # fmt: skip
    runs.loc[one, "value"] = 0.0
    ref = (runs.kind == "reference") & (runs.target_dataset == "und0") & (runs.target_task == "segmentation")
    runs.loc[ref, "value"] = 0.1  # the mean baseline (0 and ~0.5) still beats it
    g = mark_gains(transfer_gains(runs), baseline_check(runs))
    weak = (g.target == "dri0/depth").to_numpy()
    zero = ((g.target == "und0/segmentation") & (g.target_size == 16) & (g.seed == 1)).to_numpy()
    assert not g.loc[weak | zero, "included"].any() and g.loc[~(weak | zero), "included"].all()
    assert g.loc[weak, "excluded"].str.contains("does not beat the trivial predictor's").all()
    assert (g.loc[zero, "excluded"] == "the baseline's miou is 0: a relative gain divides by it").all()
    assert (g.loc[g.target == "aer1/depth", "excluded"] == "").all()  # no reference: kept
    assert len(g) == len(transfer_gains(runs))  # every transfer stays in the table, marked


@pytest.mark.parametrize("metric,hib", [("ap", "true"), ("abs_rel", "false")])
def test_a_baseline_equal_to_its_reference_does_not_beat_it(metric, hib):
    """Strictly better only: keypoint AP 0 against a prior's AP 0, or the same AbsRel, is flagged."""
    common = {"target_dataset": "t", "target_domain": "driving", "target_task": "keypoints", "target_size": "16",
              "init": "generic", "primary_metric": metric, "higher_is_better": hib}  # fmt: skip
    value = 0.0 if hib == "true" else 0.3
    runs = runs_frame([common | {"kind": kind, "seed": str(s), "metrics": {metric: value}}
                       for kind in ("baseline", "reference") for s in (0, 1)])  # fmt: skip
    check = baseline_check(runs)
    assert len(check) == 1 and check.beats_reference.notna().all() and not check.beats_reference.iloc[0]
    assert check.reason.iloc[0].startswith(f"baseline {metric} {value:.3g} does not beat the trivial predictor's")
    assert check.seeds.iloc[0] == 2
