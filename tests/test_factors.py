"""Analysis functions on seeded DataFrames, checked against plain pandas / scipy computations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.factors import add_factors, factor_tests, holm, linear_model
from analysis.findings import check_findings
from analysis.gains import summarize_gains, transfer_gains
from analysis.simulate import simulate_runs as study_runs

def test_holm_matches_manual_computation():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> monotone 0.09, 0.5*1=0.5
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])


def test_factor_effect_and_tests_match_direct_computations():
    g = add_factors(transfer_gains(study_runs(0, domain_effect=0.05)))
    table = factor_tests(g, n_boot=500).set_index("factor")
    same = g[g.source_domain == g.target_domain]["gain"]
    diff = g[g.source_domain != g.target_domain]["gain"]
    row = table.loc["same_domain"]
    assert row["effect"] == pytest.approx(same.median() - diff.median())
    assert row["mwu_p"] == pytest.approx(stats.mannwhitneyu(same, diff).pvalue)
    paired = g.groupby(["target", "target_size", "seed", "init", "same_domain"])["gain"].mean().unstack()
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(paired[True] - paired[False]).pvalue)
    assert row["ci_low"] < row["effect"] < row["ci_high"]
    assert not table.loc["multi_source", "testable"]
    assert table.loc["small_target", "testable"]


def test_linear_model_recovers_planted_coefficients():
    g = add_factors(transfer_gains(study_runs(1, domain_effect=0.08, task_effect=-0.03, noise=0.005)))
    model = linear_model(g).set_index("term")
    assert model.loc["same_domain", "coef"] == pytest.approx(0.08, abs=0.01)
    assert model.loc["same_task", "coef"] == pytest.approx(-0.03, abs=0.01)
    X = np.column_stack([np.ones(len(g)), g.same_domain.astype(float), g.same_task.astype(float),
                         g.source_larger.astype(float), np.log(g.target_size.astype(float))])  # fmt: skip
    coef = np.linalg.lstsq(X, g.gain.to_numpy(float), rcond=None)[0]
    np.testing.assert_allclose(model.loc[["intercept", "same_domain", "same_task"], "coef"], coef[:3], rtol=1e-6)
    assert "includes_target_domain" not in model.index  # collinear with same_domain for single sources


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


def test_planted_domain_effect_is_found_and_null_is_not():
    planted = study_runs(3, domain_effect=0.05)
    g = add_factors(transfer_gains(planted))
    table = factor_tests(g, n_boot=500).set_index("factor")
    assert table.loc["same_domain", "effect"] > 0 and table.loc["same_domain", "p_holm"] < 0.01
    findings = check_findings(planted, g, summarize_gains(g, planted, n_boot=200), factor_tests(g, n_boot=200))
    status = findings.set_index("finding")["status"]
    assert status["The image domain is the strongest factor"] == "held"
    assert status["A generic or ImageNet init beats training from scratch"] == "held"
    assert status["Effects grow for small targets"] == "not held"  # nothing planted there

    false_positives = 0
    for seed in range(10):
        null = add_factors(transfer_gains(study_runs(100 + seed)))
        p = factor_tests(null, n_boot=200).set_index("factor").loc["same_domain", "p_holm"]
        false_positives += p < 0.05
    assert false_positives <= 2
