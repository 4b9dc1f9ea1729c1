"""Transferability proxies (analysis/proxies.py) checked against independent computations, and proxy quality
(analysis/proxy_quality.py) on tables whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.stats import kendalltau, multivariate_normal, norm
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.linear_model import BayesianRidge

from analysis.proxies import PROXIES, domain_similarity, gbc, hscore, logme, logme_evidence, quantile_labels
from analysis.proxy_quality import kendall_tau_b, proxy_quality


def _classes(rng, n=240, d=12, c=4, signal=1.5):
    """Features whose first 2 dimensions carry the class (class means on a circle of radius `signal`)."""
    y = rng.integers(0, c, n)
    f = rng.normal(size=(n, d))
    angle = 2 * np.pi * y / c
    f[:, 0] += signal * np.cos(angle)
    f[:, 1] += signal * np.sin(angle)
    return f, y


def _log_marginal(f, y, alpha, beta):
    """log N(y; 0, f f^T / alpha + I / beta) / N: Bayesian linear regression's evidence, directly."""
    n = len(y)
    return multivariate_normal(np.zeros(n), f @ f.T / alpha + np.eye(n) / beta).logpdf(y) / n


# ---------------------------------------------------------------------------------------------------------------
# LogME


@pytest.mark.parametrize("n, d", [(60, 8), (10, 25)])  # N > D (Gram path) and N < D (SVD path)
def test_logme_evidence_is_the_closed_form_marginal_likelihood_at_its_fixed_point(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = np.stack([f @ rng.normal(size=d) * 0.4 + rng.normal(size=n), rng.normal(size=n)], axis=1)  # [N, 2]
    fit = logme_evidence(f, y)
    for k in range(2):
        a, b = fit.alpha[k], fit.beta[k]
        assert fit.evidence[k] == pytest.approx(_log_marginal(f, y[:, k], a, b), rel=1e-9, abs=1e-9)
        if n > d:  # a maximum: moving alpha or beta either way lowers the evidence (with N <= D any y is fitted
            # exactly and the supremum lies at beta -> infinity, where the iteration stops at a large beta)
            for da, db in [(1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2)]:
                assert _log_marginal(f, y[:, k], a * da, b * db) < fit.evidence[k]


@pytest.mark.parametrize("n, d", [(80, 6), (12, 20)])
def test_logme_fixed_point_agrees_with_sklearn_bayesian_ridge(n, d):
    """BayesianRidge with flat hyperpriors runs MacKay's updates: its lambda_ is LogME's alpha, its alpha_ is beta."""
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=d) * 0.5 + rng.normal(size=n)
    fit = logme_evidence(f, y)
    br = BayesianRidge(fit_intercept=False, alpha_1=0, alpha_2=0, lambda_1=0, lambda_2=0, tol=1e-12, max_iter=10_000,
                       compute_score=True).fit(f, y)  # fmt: skip
    assert fit.alpha[0] == pytest.approx(br.lambda_, rel=1e-4)
    assert fit.beta[0] == pytest.approx(br.alpha_, rel=1e-4)
    assert fit.evidence[0] == pytest.approx(br.scores_[-1] / n, rel=1e-6)


def test_logme_classification_is_the_mean_evidence_of_the_one_hot_columns():
    rng = np.random.default_rng(2)
    f, y = _classes(rng, n=90, c=3)
    y = y * 10 + 5  # any int labels: only the classes present count
    onehot = (y[:, None] == np.unique(y)[None, :]).astype(float)
    fit = logme_evidence(f, onehot)
    assert logme(f, y) == pytest.approx(np.mean([_log_marginal(f, onehot[:, k], fit.alpha[k], fit.beta[k])
                                                 for k in range(3)]), rel=1e-9)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# H-score


def test_hscore_is_trace_of_pinv_cov_f_times_cov_g():
    rng = np.random.default_rng(3)
    f, y = _classes(rng, n=200, d=10)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    direct = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert hscore(f, y) == pytest.approx(direct, rel=1e-9)


def test_regularised_hscore_is_the_ledoit_wolf_formula():
    rng = np.random.default_rng(4)
    f, y = _classes(rng, n=60, d=30)
    c = f - f.mean(axis=0)
    a = ledoit_wolf_shrinkage(c, assume_centered=True)
    s = c.T @ c / len(c)
    shrunk = (1 - a) * s + a * np.trace(s) / s.shape[0] * np.eye(s.shape[0])
    g = np.zeros_like(c)
    for k in np.unique(y):
        g[y == k] = c[y == k].mean(axis=0)
    direct = (1 - a) * np.trace(np.linalg.inv(shrunk) @ (g.T @ g / len(g)))
    assert 0 < a < 1
    assert hscore(f, y, shrinkage=True) == pytest.approx(direct, rel=1e-9)


def test_regularised_hscore_separates_where_the_plain_one_cannot():
    """With D > N the plain H-score is C - 1 for any features (Ibrahim et al.); the shrunk one still ranks."""
    rng = np.random.default_rng(5)
    f, y = _classes(rng, n=40, d=60, c=4, signal=3.0)
    noise = rng.normal(size=f.shape)
    assert hscore(f, y) == pytest.approx(3.0, rel=1e-6)
    assert hscore(noise, y) == pytest.approx(3.0, rel=1e-6)
    assert hscore(f, y, shrinkage=True) > 2 * hscore(noise, y, shrinkage=True)


# ---------------------------------------------------------------------------------------------------------------
# GBC


def _two_gaussians(rng, sep, n=200, d=6):
    y = np.repeat([0, 1], n // 2)
    f = rng.normal(size=(n, d))
    f[y == 1, 0] += sep
    return f, y


def test_gbc_higher_for_separated_classes_and_monotone_in_separation():
    rng = np.random.default_rng(6)
    scores = [gbc(*_two_gaussians(rng, sep)) for sep in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] < -1.9  # two identical classes: -2 BC ~ -2 (ordered pairs)
    assert scores[-1] > -0.01  # far apart: no overlap


def test_gbc_matches_numerical_bhattacharyya_coefficient_in_one_dimension():
    """BC = integral of sqrt(p q) over the two fitted 1-D Gaussians, by quadrature rather than the closed form."""
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], [70, 50])
    f = np.where(y == 0, rng.normal(0, 1.0, 120), rng.normal(1.5, 2.0, 120))[:, None]
    p = [(f[y == k, 0].mean(), f[y == k, 0].std()) for k in (0, 1)]
    bc = quad(lambda x: np.sqrt(norm.pdf(x, *p[0]) * norm.pdf(x, *p[1])), -30, 30, epsabs=1e-12)[0]
    assert gbc(f, y) == pytest.approx(-2 * bc, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Domain similarity


def test_domain_similarity_zero_for_the_same_sample_and_falls_with_the_shift():
    rng = np.random.default_rng(8)
    src = rng.normal(size=(150, 20))
    assert domain_similarity(src, src) == pytest.approx(0.0, abs=1e-8)
    tgt = rng.normal(size=(120, 20))
    scores = [domain_similarity(src, tgt + shift) for shift in (0.0, 0.3, 1.0, 3.0)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert domain_similarity(100 * src, 100 * (tgt + 0.3)) == pytest.approx(scores[1], rel=1e-9)  # scale-free
    assert domain_similarity(src, tgt * 3) < scores[0]  # a different spread counts too, not only the mean


# ---------------------------------------------------------------------------------------------------------------
# Properties of every proxy


def test_every_proxy_is_invariant_to_the_order_of_samples():
    rng = np.random.default_rng(9)
    f, y = _classes(rng, n=150, d=16)
    yr = f[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(150, 3))
    perm = rng.permutation(150)
    for name, fn in PROXIES.items():
        assert fn(f[perm], y[perm]) == pytest.approx(fn(f, y), rel=1e-9), name
        assert fn(f[perm], yr[perm], regression=True) == pytest.approx(fn(f, yr, regression=True), rel=1e-9), name
    other = rng.normal(size=(90, 16)) + 0.5
    assert domain_similarity(f[perm], other[rng.permutation(90)]) == pytest.approx(domain_similarity(f, other), rel=1e-9)


@pytest.mark.parametrize("regression", [False, True])
def test_features_that_carry_the_label_score_higher_than_noise(regression):
    rng = np.random.default_rng(10)
    n, d = 300, 16
    if regression:
        y = rng.normal(size=(n, 2))
        f = np.concatenate([y @ rng.normal(size=(2, 3)) + 0.5 * rng.normal(size=(n, 3)), rng.normal(size=(n, d - 3))], 1)
    else:
        f, y = _classes(rng, n=n, d=d)
    noise = rng.normal(size=(n, d)) * f.std(axis=0)
    for name, fn in PROXIES.items():
        assert fn(f, y, regression=regression) > fn(noise, y, regression=regression), name


def test_quantile_labels_are_balanced_bins():
    rng = np.random.default_rng(11)
    labels = quantile_labels(rng.normal(size=400), bins=8)
    assert np.bincount(labels).tolist() == [50] * 8
    labels2 = quantile_labels(rng.normal(size=(400, 3)), bins=4)
    assert np.bincount(labels2).tolist() == [100] * 4


@pytest.mark.parametrize("call, message", [
    (lambda: logme(np.zeros(5), np.zeros(5, int)), "f: expected a float array [N, D]"),
    (lambda: logme(np.ones((5, 2)), np.array([0, 1, 0, 1])), "y: expected int class labels [N] with N = 5"),
    (lambda: gbc(np.ones((4, 2)), np.array([0.5, 1.0, 0.2, 0.1])), "y: expected int class labels, got dtype float64"),
    (lambda: hscore(np.ones((4, 2)), np.zeros(4, int)), "y: expected at least 2 classes"),
    (lambda: logme(np.ones((4, 2)), np.ones((3, 2)), regression=True), "y: expected float regression targets"),
    (lambda: logme(np.full((4, 2), np.nan), np.array([0, 1, 0, 1])), "f: expected finite values"),
    (lambda: domain_similarity(np.ones((4, 2)), np.ones((4, 3))), "f_target: expected D = 2"),
])  # fmt: skip
def test_bad_input_is_one_line_naming_what_was_expected(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# Proxy quality


def _quality_table(rng, targets=12, sources=10):
    rows = []
    for t in range(targets):
        values = rng.normal(size=sources)
        for s in range(sources):
            rows.append({"target": f"t{t}", "source": f"s{s}", "value": values[s]})
    table = pd.DataFrame(rows)
    table["proxy.exact"] = table["value"]
    table["proxy.negated"] = -table["value"]
    table["proxy.noise"] = rng.normal(size=len(table))
    return table


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(12)
    x, y = rng.integers(0, 4, 25).astype(float), rng.integers(0, 5, 25).astype(float)
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic, rel=1e-12)


def test_proxy_quality_exact_negated_and_random():
    rng = np.random.default_rng(13)
    table = _quality_table(rng)
    q = proxy_quality(table, seed=0)
    s = q.summary.set_index("proxy")
    assert set(s.index) == {"exact", "negated", "noise", "combined", "popularity", "random"}
    for col, want in [("kendall_tau_mean", 1.0), ("weighted_tau_mean", 1.0), ("pearson_mean", 1.0),
                      ("top1_hit_mean", 1.0), ("top3_hit_mean", 1.0)]:  # fmt: skip
        assert s.loc["exact", col] == pytest.approx(want)
    for col in ("kendall_tau_mean", "weighted_tau_mean", "pearson_mean"):
        assert s.loc["negated", col] == pytest.approx(-1.0)
    assert s.loc["negated", "top1_hit_mean"] == 0 and s.loc["negated", "top3_hit_mean"] == 0
    assert abs(s.loc["random", "kendall_tau_mean"]) < 0.05
    assert s.loc["random", "top1_hit_mean"] == pytest.approx(1 / 10, abs=0.03)
    assert s.loc["random", "top3_hit_mean"] == pytest.approx(3 / 10, abs=0.05)
    assert (s["n_targets"] == 12).all()
    # lower is better: the exact proxy now ranks backwards
    low = proxy_quality(table, higher_is_better=False).summary.set_index("proxy")
    assert low.loc["exact", "kendall_tau_mean"] == pytest.approx(-1.0)
    assert low.loc["negated", "top1_hit_mean"] == 1.0


def test_proxy_quality_popularity_prior_finds_a_dominant_source_leaving_the_target_out():
    rng = np.random.default_rng(14)
    table = _quality_table(rng)
    table.loc[table["source"] == "s3", "value"] += 10  # s3 is the best source on every target
    per = proxy_quality(table).per_target
    pop = per[per["proxy"] == "popularity"]
    assert (pop["top1_hit"] == 1).all()
    # leave-one-target-out: a target's own values never enter its prior (permuting them leaves it unchanged)
    t0 = table["target"] == "t0"
    shuffled = table.copy()
    shuffled.loc[t0, "value"] = rng.permutation(shuffled.loc[t0, "value"].to_numpy())
    from analysis.proxy_quality import _popularity

    assert np.allclose(_popularity(table, table["value"])[t0], _popularity(shuffled, shuffled["value"])[t0])


def test_proxy_quality_ties_count_in_expectation_and_summary_by_group():
    table = pd.DataFrame({"target": ["a"] * 4 + ["b"] * 4, "source": list("wxyz") * 2,
                          "value": [4.0, 3, 2, 1, 1, 2, 3, 4], "proxy.p": [1.0, 1, 0, 0, 0, 0, 1, 1],
                          "task": ["seg"] * 4 + ["depth"] * 4})  # fmt: skip
    q = proxy_quality(table, by="task")
    p = q.per_target[q.per_target["proxy"] == "p"].set_index("target")
    assert p.loc["a", "top1_hit"] == 0.5 and p.loc["a", "top3_hit"] == 1.0  # best tied with one other at the top
    assert set(q.summary["task"]) == {"seg", "depth"}
    with pytest.raises(ValueError, match="by: column 'source' varies within a target"):
        proxy_quality(table, by="source")
