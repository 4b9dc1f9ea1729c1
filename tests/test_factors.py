"""Factor statistics on seeded DataFrames, checked against plain pandas / numpy / statsmodels computations."""

import warnings
from itertools import combinations, product

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

from analysis.factors import add_factors, crossed_mean_test, factor_tests, holm, mixed_model, sign_flip_test
from analysis.findings import check_findings
from analysis.gains import summarize_gains, transfer_gains
from analysis.mixed import fit_mixed
from analysis.simulate import simulate_gains
from analysis.simulate import simulate_runs as study_runs

BLOCK = ["target", "target_size", "seed", "init"]  # a baseline's transfers


def test_holm_is_statsmodels_holm_and_skips_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> monotone 0.09, 0.5*1=0.5
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])


def _centred(g: pd.DataFrame) -> pd.Series:
    return g["gain"] - g.groupby(BLOCK)["gain"].transform("mean")


def _dummies(s: pd.Series) -> np.ndarray:
    return pd.get_dummies(s).to_numpy(float)


def test_pair_level_factor_is_the_within_source_and_target_coefficient():
    g = simulate_gains(0, domain_effect=0.05, source_sd=0.05, baseline_sd=0.03)
    row = factor_tests(g, n_perm=500).set_index("factor").loc["same_domain"]
    pairs = g.assign(y=_centred(g)).groupby(["source", "target"]).agg(y=("y", "mean"), x=("same_domain", "first"))
    src, tgt = pairs.index.get_level_values(0), pairs.index.get_level_values(1)
    X = np.column_stack([pairs["x"].astype(float), _dummies(pd.Series(src)), _dummies(pd.Series(tgt))])
    coef = np.linalg.lstsq(X, pairs["y"].to_numpy(float), rcond=None)[0][0]
    assert row["effect"] == pytest.approx(coef, rel=1e-9)
    assert row["effect"] == pytest.approx(0.05, abs=0.01)  # a source's quality and a baseline's noise cancel
    assert row["unit"] == "pairs within targets" and row["n_units"] == len(pairs) == 12 * 11
    assert row["units_yes"] == pairs["x"].sum() and row["p"] == pytest.approx(1 / 501)  # nothing as extreme
    assert row["ci_low"] < row["effect"] < row["ci_high"] and row["ci_low"] > 0
    assert row["median_yes"] == pytest.approx(g.loc[g["same_domain"], "gain"].median())


def test_source_level_factor_has_the_exact_permutation_p_over_its_sources():
    # two of twelve sources are multi-source: C(12, 2) = 66 arrangements of the label over the sources
    g = simulate_gains(1, source_sd=0.05, baseline_sd=0.03, multi_effect=0.04, sizes=(16,), seeds=2,
                       multi_source=("dri1",))  # fmt: skip
    row = factor_tests(g, n_perm=500).set_index("factor").loc["multi_source"]
    means = g.assign(y=_centred(g)).groupby("source").agg(y=("y", "mean"), x=("multi_source", "first"))
    y, x = means["y"].to_numpy(), means["x"].to_numpy()
    observed = y[x].mean() - y[~x].mean()
    null = np.array([y[list(c)].mean() - np.delete(y, list(c)).mean() for c in combinations(range(12), 2)])
    assert row["effect"] == pytest.approx(observed, rel=1e-9)
    assert row["unit"] == "sources" and (row["n_units"], row["units_yes"], row["units_no"]) == (12, 2, 10)
    assert row["n_arrangements"] == len(null) == 66
    assert row["p"] == pytest.approx(np.mean(np.abs(null) >= abs(observed) - 1e-12))
    assert row["min_p"] == pytest.approx(np.mean(np.abs(null) >= np.abs(null).max() - 1e-12))


def test_size_factor_flips_signs_per_target():
    g = simulate_gains(2, small_effect=0.01, baseline_sd=0.03, source_sd=0.05, seeds=2)
    row = factor_tests(g, n_perm=500).set_index("factor").loc["small_target"]
    cells = g.groupby(["source", "target", "small_target"])["gain"].mean().unstack()
    diff = (cells[True] - cells[False]).rename("d").reset_index()
    assert row["effect"] == pytest.approx(diff["d"].mean(), rel=1e-9)
    per_target = diff.groupby("target")["d"].sum().to_numpy() / len(diff)
    null = np.array([np.dot(s, per_target) for s in product([1, -1], repeat=len(per_target))])
    assert row["unit"] == "targets (sizes swapped)" and row["n_units"] == 12 and row["n_arrangements"] == 4096
    assert row["p"] == pytest.approx(np.mean(np.abs(null) >= abs(row["effect"]) - 1e-12))


def test_source_larger_is_tested_across_sources_with_their_quality_cancelled():
    # 400-image sources are larger than targets of 16 and 64, 32-image ones only than 16: within a source, the
    # factor changes with the target size, so the test compares that change between sources
    g = simulate_gains(3, size_effect=0.03, source_sd=0.08, baseline_sd=0.03, seeds=2)
    row = factor_tests(g, n_perm=500).set_index("factor").loc["source_larger"]
    cells = g.assign(y=_centred(g)).groupby(["source", "target_size"])["y"].mean().unstack()
    change = cells[16] - cells[64]
    larger_always = g.groupby("source")["source_larger"].all()
    assert row["effect"] == pytest.approx(change[~larger_always].mean() - change[larger_always].mean(), rel=1e-9)
    assert row["unit"] == "sources" and row["n_arrangements"] == 924 and row["p"] < 0.01


def test_mixed_model_matches_statsmodels_mixedlm():
    g = simulate_gains(4, domain_effect=0.05, per_domain=1, seeds=2, source_sd=0.05, target_sd=0.02, pair_sd=0.01,
                       baseline_sd=0.03)  # fmt: skip
    model, variance = mixed_model(g)
    model, variance = model.set_index("term"), variance.set_index("component")
    assert list(variance.index) == ["source", "target", "pair", "baseline", "residual"]
    codes = {"source": g["source"], "target": g["target"], "pair": g["source"] + g["target"],
             "baseline": g["target"] + g["target_size"].astype(str) + g["seed"].astype(str)}  # fmt: skip
    mats = [_dummies(c) for c in codes.values()]
    X = np.column_stack([np.ones(len(g)), *(g[t].astype(float) for t in model.index[1:-1]),
                         np.log(g["target_size"].astype(float))])  # fmt: skip
    vc = VCSpec(list(codes), [[[f"{k}{i}" for i in range(m.shape[1])]] for k, m in zip(codes, mats, strict=True)],
                [[m] for m in mats])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLM(g["gain"].to_numpy(float), X, np.zeros(len(g)), exog_vc=vc).fit(reml=True)
    np.testing.assert_allclose(model["coef"], ref.fe_params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model["se"], ref.bse_fe, rtol=1e-3)
    np.testing.assert_allclose(variance["variance"].iloc[:4], ref.vcomp, rtol=1e-2, atol=1e-7)
    assert variance.loc["residual", "variance"] == pytest.approx(ref.scale, rel=1e-3)
    assert variance["share"].sum() == pytest.approx(1.0)


def test_mixed_model_recovers_planted_coefficients_and_components():
    g = simulate_gains(1, domain_effect=0.08, task_effect=-0.03, noise=0.005, source_sd=0.04, baseline_sd=0.02,
                       per_domain=3)  # fmt: skip
    model, variance = mixed_model(g)
    model, sd = model.set_index("term"), variance.set_index("component")["sd"]
    assert model.loc["same_domain", "coef"] == pytest.approx(0.08, abs=0.01)
    assert model.loc["same_task", "coef"] == pytest.approx(-0.03, abs=0.01)
    assert "includes_target_domain" not in model.index  # collinear with same_domain for single sources
    assert set(model["n"]) == {len(g)}
    drawn = np.random.default_rng((1, 1)).normal(0, 0.04, 18)  # the 18 sources' qualities (simulate's own stream)
    assert sd["source"] == pytest.approx(drawn.std(ddof=1), rel=0.05)
    assert sd["baseline"] == pytest.approx(0.02, rel=0.15) and sd["residual"] == pytest.approx(0.005, rel=0.1)
    assert sd["target"] < 0.012 and sd["pair"] < 0.003  # none planted


def test_fit_mixed_without_groupings_is_least_squares():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(50), rng.normal(size=50)])
    y = X @ [1.0, 2.0] + rng.normal(0, 0.1, 50)
    fit = fit_mixed(y, X, ["a", "b"], {})
    np.testing.assert_allclose(fit.coef, np.linalg.lstsq(X, y, rcond=None)[0])
    resid = y - X @ fit.coef
    assert fit.variances["residual"] == pytest.approx(resid @ resid / 48)


def test_one_sample_tests_count_their_clusters():
    rng = np.random.default_rng(5)
    shared = rng.normal(0, 1, 8)  # each cluster's values share one big effect: 8 units, not 80
    values = np.repeat(shared, 10) + rng.normal(0, 0.01, 80)
    clusters = np.repeat(np.arange(8), 10)
    flip = sign_flip_test(values, clusters)
    means = shared + 0  # per cluster, the values are about equal
    null = np.array([np.mean(np.repeat(np.array(s) * means, 10)) for s in product([1, -1], repeat=8)])
    assert flip["n_clusters"] == 8 and flip["min_p"] == pytest.approx(2 / 256)
    assert flip["p"] == pytest.approx(np.mean(np.abs(null) >= abs(values.mean()) - 1e-3), abs=0.02)
    crossed = crossed_mean_test(values, clusters, np.tile(np.arange(10), 8))
    assert crossed["df"] == 7 and crossed["se"] > 2 * values.std() / np.sqrt(80)  # not the naive standard error


def test_summary_bootstrap_interval_and_noise_flag():
    runs = study_runs(2, domain_effect=0.1)
    g = transfer_gains(runs)
    pairs = summarize_gains(g, runs, n_boot=500)
    first = pairs.iloc[0]
    sub = g[(g.source == first.source) & (g.target == first.target) & (g.target_size == first.target_size)]
    assert first.gain == pytest.approx(sub.gain.mean()) and first.n_seeds == 3
    assert first.ci_low <= first.gain <= first.ci_high
    same = pairs[pairs.source_domain == pairs.target_domain]
    assert not same.within_noise.any()  # +10% is far outside 2% noise


def test_planted_domain_effect_is_found():
    planted = study_runs(3, domain_effect=0.05, source_sd=0.05, baseline_sd=0.03)
    g = add_factors(transfer_gains(planted))
    table = factor_tests(g, n_perm=500).set_index("factor")
    assert table.loc["same_domain", "effect"] > 0 and table.loc["same_domain", "p_holm"] < 0.01
    findings = check_findings(planted, g, summarize_gains(g, planted, n_boot=200), table.reset_index())
    status = findings.set_index("finding")["status"]
    assert status["The image domain is the strongest factor"] == "held"
    assert status["A generic or ImageNet init beats training from scratch"] == "held"
    assert status["Effects grow for small targets"] == "not held"  # nothing planted there
