"""Linear mixed models with crossed random effects, fitted by REML from their cross-products.

    fit = fit_mixed(y, X, names, {"source": codes, "target": codes, "pair": codes})
    fit.coef, fit.se                 # fixed effects and their standard errors
    fit.variances                    # {grouping: variance of its random effect, ..., "residual": ...}

The model is y = X b + sum_k Z_k u_k + e with u_k ~ N(0, s_k^2 I) and e ~ N(0, s^2 I), where Z_k is the
indicator matrix of grouping k (integer codes 0..levels-1, one per observation); groupings may be crossed
(source and target) or nested (a pair within its target) in any mix. It is statsmodels' `MixedLM` with one
group and one variance component per grouping, and gives its REML estimates (tests/test_factors.py checks
that), but statsmodels builds that one group's dense n x q design and needs seconds for a 800-transfer study
and minutes for a 10,000-transfer one. Here the profiled REML criterion of Bates et al. (2015, lme4, section
3) is evaluated from the q x q cross-products, which are formed once: milliseconds per evaluation.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize, sparse


def one_blas_thread() -> AbstractContextManager:
    """One BLAS thread for a block of small matrix work: on a busy machine OpenBLAS's threads only contend, and a
    228 x 228 Cholesky factorisation takes 100 ms instead of 1. (threadpoolctl comes with mlflow's scikit-learn;
    without it, nothing changes.)"""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(1)


@dataclass(frozen=True)
class MixedFit:
    names: list[str]  # fixed terms, in the order of X's columns
    coef: np.ndarray
    se: np.ndarray
    variances: dict[str, float]  # each grouping's random-effect variance, then "residual"
    levels: dict[str, int]  # levels of each grouping
    n: int
    converged: bool


def _indicators(codes: dict[str, np.ndarray], n: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    blocks, owner = [], []
    for k, c in enumerate(codes.values()):
        c = np.asarray(c, int)
        q = int(c.max()) + 1 if len(c) else 0
        blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), c)), shape=(n, q)))
        owner += [k] * q
    Z = sparse.hstack(blocks, format="csr") if blocks else sparse.csr_matrix((n, 0))
    return Z, np.asarray(owner, int)


def fit_mixed(y: np.ndarray, X: np.ndarray, names: list[str], groupings: dict[str, np.ndarray]) -> MixedFit:
    """REML fit of y on X with one random intercept per level of each grouping (see the module)."""
    with one_blas_thread():
        return _fit(y, X, names, groupings)


def _fit(y: np.ndarray, X: np.ndarray, names: list[str], groupings: dict[str, np.ndarray]) -> MixedFit:
    y, X = np.asarray(y, float), np.asarray(X, float)
    n, p = X.shape
    Z, owner = _indicators(groupings, n)
    q = Z.shape[1]
    ZtZ = (Z.T @ Z).toarray()
    ZtX, Zty = Z.T @ X, Z.T @ y
    XtX, Xty, yty = X.T @ X, X.T @ y, float(y @ y)
    eye = np.eye(q)

    def solve(theta: np.ndarray):
        lam = theta[owner]
        L = linalg.cholesky(lam[:, None] * ZtZ * lam[None, :] + eye, lower=True)
        cu = linalg.solve_triangular(L, lam * Zty, lower=True)
        RZX = linalg.solve_triangular(L, lam[:, None] * ZtX, lower=True)
        RX = linalg.cholesky(XtX - RZX.T @ RZX, lower=False)  # RX' RX
        cb = linalg.solve_triangular(RX, Xty - RZX.T @ cu, trans="T", lower=False)
        r2 = max(yty - cu @ cu - cb @ cb, 1e-300)
        return L, RX, cb, r2

    def deviance(theta: np.ndarray) -> float:
        try:
            L, RX, _, r2 = solve(theta)
        except linalg.LinAlgError:
            return np.inf
        return float(2 * np.log(np.diag(L)).sum() + 2 * np.log(np.abs(np.diag(RX))).sum()
                     + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))  # fmt: skip

    k = len(groupings)
    converged = True
    theta = np.ones(k)
    if k:
        best = None
        for start in (np.ones(k), np.full(k, 0.2)):  # REML is usually unimodal; two starts guard the exceptions
            res = optimize.minimize(deviance, start, method="L-BFGS-B", bounds=[(0, None)] * k)
            if best is None or res.fun < best.fun:
                best = res
        theta, converged = best.x, bool(best.success)
    _, RX, cb, r2 = solve(theta)
    sigma2 = r2 / (n - p)
    coef = linalg.solve_triangular(RX, cb, lower=False)
    RXinv = linalg.solve_triangular(RX, np.eye(p), lower=False)
    se = np.sqrt(sigma2 * np.sum(RXinv**2, axis=1))
    variances = {name: float(t**2 * sigma2) for name, t in zip(groupings, theta, strict=True)}
    variances["residual"] = float(sigma2)
    levels = {name: int(np.asarray(c).max()) + 1 for name, c in groupings.items()}
    return MixedFit(list(names), coef, se, variances, levels, n, converged)
