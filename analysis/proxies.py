"""Transferability proxies: cheap scores of a source model's frozen features on a target, higher = more transferable.

    logme(f, y)                        # You et al., ICML 2021: mean per-sample log evidence of a Bayesian linear head
    logme(f, y, regression=True)       # y float [N] or [N, K]
    gbc(f, y)                          # Pandy et al., CVPR 2022: minus the Bhattacharyya overlap of the classes
    hscore(f, y)                       # Bao et al., ICIP 2019: tr(pinv(cov f) cov E[f|y])
    hscore(f, y, shrinkage=True)       # Ibrahim et al., 2022: the same with a Ledoit-Wolf covariance
    domain_similarity(f_src, f_tgt)    # label-free: minus the scale-free Frechet distance of two feature Gaussians

`f` is [N, D] float: one row per target training sample (an image's pooled backbone + neck features); `y` is [N]
int class labels, or float regression targets ([N] or [N, K]) with `regression=True`. GBC and H-score are defined
on classes: with `regression=True` they score the quantile bins of `y` (`quantile_labels`). Every function is pure
numpy/scipy on arrays, invariant to the order of the samples, and raises `ValueError` with one line naming the
argument and what was expected on bad shapes or values. `PROXIES` names the labelled ones for the proxy jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np


def _features(f, name: str = "f") -> np.ndarray:
    """`f` as a finite float64 [N, D] array with N >= 2, or a one-line ValueError."""
    a = np.asarray(f)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected a float array [N, D] with N >= 2 samples, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected a real float array [N, D], got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, found {int((~np.isfinite(a)).sum())} NaN or inf")
    return a


def _class_labels(y, n: int) -> np.ndarray:
    """`y` as int class labels [n] with at least 2 classes, or a one-line ValueError."""
    a = np.asarray(y)
    if a.shape != (n,):
        raise ValueError(f"y: expected int class labels [N] with N = {n} (the rows of f), got shape {a.shape}; "
                         "pass regression=True for float targets")  # fmt: skip
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise ValueError(f"y: expected int class labels, got dtype {a.dtype}; pass regression=True for float targets")
    if len(np.unique(a)) < 2:
        raise ValueError("y: expected at least 2 classes, got 1")
    return a


def _regression_targets(y, n: int) -> np.ndarray:
    """`y` as finite float64 [n, K], or a one-line ValueError."""
    a = np.asarray(y)
    if a.ndim not in (1, 2) or a.shape[0] != n or (a.ndim == 2 and a.shape[1] < 1):
        raise ValueError(f"y: expected float regression targets [N] or [N, K] with N = {n} (the rows of f), "
                         f"got shape {a.shape}")  # fmt: skip
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"y: expected real regression targets, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(n, -1)
    if not np.isfinite(a).all():
        raise ValueError(f"y: expected finite regression targets, found {int((~np.isfinite(a)).sum())} NaN or inf")
    return a


def quantile_labels(y, bins: int = 8) -> np.ndarray:
    """Int labels [N] in 0..bins-1: the quantile bins of regression targets `y` ([N] or [N, K] float).

    For K > 1 the targets are standardised and projected on their first principal component (its sign fixed so
    that its largest entry is positive) before binning. Bins with equal edges (ties) merge. The class-based
    proxies (GBC, H-score) score regression targets through these labels.
    """
    if bins < 2:
        raise ValueError(f"bins: expected at least 2, got {bins}")
    t = _regression_targets(y, np.asarray(y).shape[0] if np.ndim(y) else 0)
    if t.shape[1] > 1:
        sd = t.std(axis=0)
        z = (t - t.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        pc = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
        x = z @ pc
    else:
        x = t[:, 0]
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    labels = np.searchsorted(edges, x, side="right")
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _labels(y, n: int, regression: bool, bins: int) -> np.ndarray:
    labels = quantile_labels(y, bins) if regression else _class_labels(y, n)
    if regression and len(labels) != n:
        raise ValueError(f"y: expected N = {n} rows (the rows of f), got {len(labels)}")
    if len(np.unique(labels)) < 2:
        raise ValueError("y: expected targets that take at least 2 distinct values")
    return labels


# ---------------------------------------------------------------------------------------------------------------
# LogME


@dataclass(frozen=True)
class LogMEFit:
    """LogME's fixed point per label column: `evidence` (log p(y | f, alpha, beta) / N), `alpha` (prior precision
    of the weights), `beta` (noise precision), each [C]; `iterations` the fixed-point steps taken."""

    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: int


def logme_evidence(f, targets, tol: float = 1e-6, max_iter: int = 100) -> LogMEFit:
    """LogME's evidence maximisation for each column of `targets` [N, C] float given features `f` [N, D].

    Model per column y: y = f w + e, w ~ N(0, I / alpha), e ~ N(0, I / beta). Starting at alpha = beta = 1, the
    fixed point of You et al. (ICML 2021, Algorithm 1; MacKay's updates) alternates

        gamma = sum_i s_i / (s_i + alpha / beta),   m = beta A^-1 f^T y,   A = alpha I + beta f^T f,
        alpha = gamma / |m|^2,                       beta = (N - gamma) / |y - f m|^2

    with s_i the eigenvalues of f^T f, until alpha / beta changes by less than `tol` (relative). It works on one
    eigendecomposition: of the D x D Gram matrix f^T f when N > D (fast for N >> D), else an SVD of f. The evidence
    at the fixed point is the log marginal likelihood, exactly:

        L = D/2 log alpha + N/2 log beta - 1/2 sum_{i=1..D} log(alpha + beta s_i)
            - beta/2 |y - f m|^2 - alpha/2 |m|^2 - N/2 log 2 pi

    (s_i = 0 beyond the rank of f), reported per sample (L / N). You et al.'s code stops after at most 11 steps,
    adds 1e-5 to the denominators and sums only the nonzero s_i; this one iterates to `tol` and is exact.
    """
    f = _features(f)
    n, d = f.shape
    y = _regression_targets(targets, n)
    if n > d:  # eigh of the Gram matrix: O(N D^2 + D^3), no N x N or N x D factor
        s, v = np.linalg.eigh(f.T @ f)
        keep = s > s.max() * d * np.finfo(np.float64).eps
        s, v = s[keep], v[:, keep]
        x = (v.T @ (f.T @ y)) / np.sqrt(s)[:, None]  # u^T y without forming u = f v / sqrt(s)
    else:
        u, sv, _ = np.linalg.svd(f, full_matrices=False)
        keep = sv > sv.max() * max(n, d) * np.finfo(np.float64).eps
        s, x = sv[keep] ** 2, u[:, keep].T @ y
    x2 = x**2  # [k, C]
    y2 = (y**2).sum(axis=0)  # [C]
    res_out = np.maximum(y2 - x2.sum(axis=0), 0.0)  # the part of y outside the span of f
    tiny = np.finfo(np.float64).tiny
    floor = 1e-12 * np.maximum(y2, tiny)

    def fit_terms(t):  # |m|^2 and |y - f m|^2 at alpha / beta = t (t broadcast over columns)
        shrink = s[:, None] / (s[:, None] + t)
        m2 = (x2 * shrink**2 / s[:, None]).sum(axis=0)
        res2 = (x2 * (1.0 - shrink) ** 2).sum(axis=0) + res_out
        return m2, res2, shrink.sum(axis=0)

    alpha, beta = np.ones(y.shape[1]), np.ones(y.shape[1])
    it = 0
    for it in range(1, max_iter + 1):
        t = alpha / beta
        m2, res2, gamma = fit_terms(t)
        alpha = gamma / np.maximum(m2, floor)
        beta = np.maximum(n - gamma, 1e-12) / np.maximum(res2, floor)
        alpha = np.maximum(alpha, tiny)
        if np.all(np.abs(alpha / beta - t) <= tol * t):
            break
    m2, res2, _ = fit_terms(alpha / beta)
    logdet = np.log(alpha[None, :] + beta[None, :] * s[:, None]).sum(axis=0) + (d - len(s)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2 - beta / 2 * res2 - alpha / 2 * m2
                - n / 2 * np.log(2 * np.pi)) / n  # fmt: skip
    return LogMEFit(evidence=evidence, alpha=alpha, beta=beta, iterations=it)


def logme(f, y, regression: bool = False) -> float:
    """LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021).

    `f` [N, D] float features; `y` [N] int class labels, or with `regression=True` float targets [N] or [N, K].
    Returns the mean over label columns (the one-hot indicator of each class present in `y`, or each regression
    dimension) of the per-sample log evidence of a Bayesian linear model from `f` to the column, at the alpha and
    beta that maximise it (`logme_evidence`). Higher = more transferable. Features are used as given (the paper
    neither centres nor scales them), so compare scores of one feature extractor family on one target.
    """
    f = _features(f)
    if regression:
        targets = _regression_targets(y, f.shape[0])
    else:
        labels = _class_labels(y, f.shape[0])
        targets = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)  # one-hot [N, C]
    return float(logme_evidence(f, targets).evidence.mean())


# ---------------------------------------------------------------------------------------------------------------
# PCA shared by GBC and the domain similarity


def _pca(f: np.ndarray, k: int, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top-k principal axes [D, k] of `f` (centred on `mean`, default its own) and their variances [k]."""
    c = f - (f.mean(axis=0) if mean is None else mean)
    n, d = c.shape
    if n > d:
        w, v = np.linalg.eigh(c.T @ c / n)
        order = np.argsort(w)[::-1][:k]
        return v[:, order], np.maximum(w[order], 0.0)
    _, sv, vt = np.linalg.svd(c, full_matrices=False)
    return vt[:k].T, sv[:k] ** 2 / n


# ---------------------------------------------------------------------------------------------------------------
# GBC


def gbc(f, y, dims: int = 64, regression: bool = False, bins: int = 8) -> float:
    """GBC (Pandy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022).

    `f` [N, D] float features; `y` [N] int class labels (with `regression=True`, float targets binned by
    `quantile_labels(y, bins)`). The features are projected on their top min(dims, D, N - 1) principal components
    (the paper uses 64); each class c gets a diagonal Gaussian (mean mu_c, per-dimension variance v_c, plus a floor
    of 1e-6 x the mean variance so a one-sample class stays finite); for classes i != j, with v = (v_i + v_j) / 2,

        D_B(i, j) = 1/8 sum (mu_i - mu_j)^2 / v + 1/2 sum log(v / sqrt(v_i v_j)),    BC(i, j) = exp(-D_B(i, j))

    and GBC = - sum over ordered pairs i != j of BC(i, j) (the paper's Eq. 4): 0 for perfectly separated classes,
    down to -C (C - 1) for identical ones. Higher = more transferable.
    """
    f = _features(f)
    if dims < 1:
        raise ValueError(f"dims: expected at least 1, got {dims}")
    labels = _labels(y, f.shape[0], regression, bins)
    axes, _ = _pca(f, min(dims, f.shape[1], f.shape[0] - 1))
    z = (f - f.mean(axis=0)) @ axes  # [N, k]
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse)
    mu = np.zeros((len(classes), z.shape[1]))
    np.add.at(mu, inverse, z)
    mu /= counts[:, None]
    var = np.zeros_like(mu)
    np.add.at(var, inverse, (z - mu[inverse]) ** 2)
    var = var / counts[:, None] + 1e-6 * max(float(z.var(axis=0).mean()), np.finfo(np.float64).tiny)
    logv = np.log(var)
    total = 0.0
    for i in range(len(classes) - 1):  # unordered pairs (i, j > i), vectorised over j
        v = (var[i] + var[i + 1 :]) / 2
        db = ((mu[i] - mu[i + 1 :]) ** 2 / v).sum(axis=1) / 8 + (np.log(v) - (logv[i] + logv[i + 1 :]) / 2).sum(axis=1) / 2
        total += np.exp(-db).sum()
    return float(-2.0 * total)


# ---------------------------------------------------------------------------------------------------------------
# H-score


def hscore(f, y, shrinkage: bool = False, regression: bool = False, bins: int = 8) -> float:
    """H-score (Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
    ICIP 2019), and its regularised form (Ibrahim et al., "Newer is not always better: rethinking transferability
    metrics, their peculiarities, stability and performance", ECML-PKDD 2022) with `shrinkage=True`.

    `f` [N, D] float features; `y` [N] int class labels (with `regression=True`, float targets binned by
    `quantile_labels(y, bins)`). With g the class-conditional mean of f (each sample's row replaced by its class's
    mean feature):

        hscore           = tr(pinv(cov f) cov g)                      (sample covariances, pinv at numpy's rank tolerance)
        shrinkage=True   = (1 - a) tr(inv(cov_a f) cov g)              cov_a f = (1 - a) S + a tr(S)/D I

    with S the maximum-likelihood covariance of f, a the Ledoit-Wolf shrinkage (scikit-learn's `LedoitWolf`) and
    cov g normalised by N like S. Higher = more transferable. The plain score is unstable when D is near or above N
    (it tends to C - 1 whatever the features); the shrunk one is not.
    """
    f = _features(f)
    n, d = f.shape
    labels = _labels(y, n, regression, bins)
    c = f - f.mean(axis=0)
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse)
    means = np.zeros((len(classes), d))
    np.add.at(means, inverse, c)
    means /= counts[:, None]  # [C, D], the rows of g (centred: their count-weighted mean is 0)
    if not shrinkage:
        cov_f = c.T @ c / (n - 1)
        w, v = np.linalg.eigh(cov_f)
        keep = w > w.max() * d * np.finfo(np.float64).eps
        proj = means @ v[:, keep]  # tr(pinv(cov f) cov g) = sum_c n_c/(n-1) mu_c^T pinv(cov f) mu_c
        return float((counts[:, None] / (n - 1) * proj**2 / w[keep]).sum())
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=True).fit(c)
    a = float(lw.shrinkage_)
    cov_g_rows = means * np.sqrt(counts / n)[:, None]  # cov g = cov_g_rows^T cov_g_rows
    solved = np.linalg.lstsq(lw.covariance_, cov_g_rows.T, rcond=None)[0]  # inv(cov_a f) (cov_g_rows^T)
    return float((1 - a) * (cov_g_rows.T * solved).sum())


# ---------------------------------------------------------------------------------------------------------------
# Label-free domain similarity


def domain_similarity(f_source, f_target, dims: int = 64) -> float:
    """Label-free similarity of a source's domain to a target's, in one feature space: -FD / V, at most 0.

    `f_source` [N_s, D] and `f_target` [N_t, D]: the same (source) model's features on source-domain images and on
    the target's training images. Both are projected on the top min(dims, D, N_s + N_t - 1) principal components of
    the pooled features; with a Gaussian fitted to each (mean mu, covariance C),

        FD = |mu_s - mu_t|^2 + tr(C_s + C_t - 2 (C_s^1/2 C_t C_s^1/2)^1/2)

    is the Frechet distance (FID's, Heusel et al., NeurIPS 2017: the standard label-free distance between two
    feature distributions, closed form, O(D^3) at most), and V the pooled total variance in the same projection,
    which makes the score scale-free so that sources whose backbones differ in feature scale can be ranked on one
    target. 0 = identical Gaussians; about -4 for two tight clusters far apart. Cheaper alternatives (the cosine of
    the two mean features) ignore the spread; kernel MMD needs an N x N kernel and a bandwidth. Higher = more similar.
    """
    fs, ft = _features(f_source, "f_source"), _features(f_target, "f_target")
    if fs.shape[1] != ft.shape[1]:
        raise ValueError(f"f_target: expected D = {fs.shape[1]} feature dimensions like f_source, got {ft.shape[1]}")
    pooled = np.concatenate([fs, ft])
    mean = pooled.mean(axis=0)
    axes, var = _pca(pooled, min(dims, pooled.shape[1], pooled.shape[0] - 1), mean)
    total = float(var.sum())
    if total <= 0:
        return 0.0  # every feature identical: one point, identical domains
    zs, zt = (fs - mean) @ axes, (ft - mean) @ axes
    cs, ct = np.atleast_2d(np.cov(zs, rowvar=False)), np.atleast_2d(np.cov(zt, rowvar=False))
    w, v = np.linalg.eigh(cs)
    root = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T  # C_s^1/2
    cross = np.sqrt(np.maximum(np.linalg.eigvalsh(root @ ct @ root), 0.0)).sum()
    fd = float(((zs.mean(axis=0) - zt.mean(axis=0)) ** 2).sum() + np.trace(cs) + np.trace(ct) - 2 * cross)
    return -max(fd, 0.0) / total


PROXIES = {  # the labelled proxies a proxy job computes, each called as fn(f, y, regression=...)
    "logme": logme,
    "gbc": gbc,
    "hscore": hscore,
    "hscore_shrunk": partial(hscore, shrinkage=True),
}
