"""Factors of influence: which properties of a (source, target) pair go with larger gains, tested at the level
where each varies.

    g = add_factors(gains)          # boolean factor columns on each transfer
    table = factor_tests(g)         # per factor: effect, unit of replication, permutation p, Holm
    model, variance = mixed_model(g)  # gain ~ all factors jointly, crossed random effects; variance components

Transfers are not independent observations: every transfer from one source shares that source's quality,
every transfer onto one target shares that target's baseline, and every transfer at one (target, size, seed,
init) shares that baseline's noise. A test that counts transfers finds a factor that lives at the level of
sources far more often than its nominal rate. So each factor is tested where it varies, with the units that
replicate it (the `unit` and `n_units` columns):

- **source-level** (a property of the source, possibly per target size: multi-source; source larger than
  target; same domain when every target is in one domain). Gains are centred within their baseline's block
  (target, size, seed, init), which removes every target and baseline effect, then averaged per source and
  stratum (target size, init). Labels are permuted across sources, each keeping its profile over the strata.
  Where the factor also changes within sources (source larger: a 32-image source is larger than a 16-image
  target, not than a 64-image one), source fixed effects are added, so a source's quality cancels.
- **target-level**: the same with sources and targets swapped (gains centred per source, size, seed, init).
- **pair-level** (it depends on both: same domain, same task, includes the target's domain). Block-centred
  gains are averaged per (source, target) pair; source and target fixed effects remove a source's quality and
  a target's level; labels are permuted among the sources of each target.
- **condition-level** (target size, init: it changes within a pair). The difference between the pair's two
  conditions (mean over seeds), averaged; the two conditions are swapped (the sign flipped) per target, with
  all its sources and seeds together, since a target's baselines at its two sizes carry their own noise.

The effect is the least-squares coefficient of the factor given those fixed effects (for the condition level,
the mean difference), in gain units: yes minus no. It is recomputed for every arrangement of the labels
(Draper-Stoneman); the two-sided p-value is exact over all distinct arrangements when they number at most
`MAX_EXACT`, else (b + 1) / (n_perm + 1) from `n_perm` random ones. The 95% interval is the effect minus the
97.5% and 2.5% quantiles of that permutation distribution. `min_p` is the smallest p-value the design can
give at all: 6 sources split 3 and 3 have 20 arrangements and cannot go below 0.1, whatever the data.
`p_holm` is Holm's correction over the factors with a p-value (statsmodels' `multipletests`). The medians
are descriptive: the medians of the two groups of transfers. Undefined (NaN) gains are dropped first; the
caller leaves out the transfers that must not count (`gains.mark_gains`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations, product

import numpy as np
import pandas as pd
from scipy import linalg, stats
from statsmodels.stats.multitest import multipletests

from analysis.mixed import fit_mixed, one_blas_thread

TARGET = ["target", "target_size", "seed", "init"]  # a baseline's block: the transfers that share its noise
STRATA = ["target_size", "init"]
MAX_EXACT = 5000  # enumerate every distinct arrangement up to this many, else sample n_perm of them


@dataclass(frozen=True)
class Factor:
    name: str
    question: str
    yes: str
    no: str
    pair_by: tuple[str, ...] = tuple(TARGET)


FACTORS = (
    Factor("same_domain", "same vs different image domain", "same domain", "different domain"),
    Factor("same_task", "same vs different task type", "same task type", "different task type"),
    Factor("includes_target_domain", "source includes the target's domain", "includes", "excludes"),
    Factor("source_larger", "source larger than target", "source larger", "source smaller or equal"),
    Factor("small_target", "target training size (smallest vs largest)", "smallest target size",
           "largest target size", ("source", "target", "seed", "init")),
    Factor("multi_source", "multi-source vs single source", "multi-source", "single source"),
    Factor("generic_init", "init: generic or ImageNet vs scratch", "generic/imagenet", "scratch"),
)  # fmt: skip


def add_factors(gains: pd.DataFrame) -> pd.DataFrame:
    """`gains` with one nullable boolean column per factor (NA where a factor does not apply)."""
    g = gains.copy()
    g["same_domain"] = g["source_domain"] == g["target_domain"]
    g["same_task"] = g["source_task"] == g["target_task"]
    domains = g.get("source_domains", g["source_domain"]).fillna(g["source_domain"]).astype(str)
    g["includes_target_domain"] = [t in d.split(",") for d, t in zip(domains, g["target_domain"], strict=True)]
    size = pd.to_numeric(g.get("source_size", pd.Series(np.nan, index=g.index)), errors="coerce")
    g["source_larger"] = pd.array(np.where(size.isna(), pd.NA, size > g["target_size"].astype(float)), "boolean")
    sizes = g["target_size"]
    small = pd.Series(pd.NA, index=g.index, dtype="boolean")
    if sizes.nunique() > 1:
        small[sizes == sizes.min()] = True
        small[sizes == sizes.max()] = False
    g["small_target"] = small
    multi = g.get("multi_source", pd.Series("false", index=g.index)).astype(str) == "true"
    g["multi_source"] = multi
    g["generic_init"] = g["init"] != "scratch"
    return g


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (statsmodels' `multipletests`); NaN stays NaN and does not count."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


# -- the permutation machinery ----------------------------------------------------------------------------------


def _basis(N: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the column space of N (rank-revealing QR)."""
    if N.shape[1] == 0:
        return np.zeros((N.shape[0], 0))
    Q, R, _ = linalg.qr(N, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    rank = int((d > 1e-9 * max(d.max(initial=0.0), 1e-300)).sum())
    return Q[:, :rank]


def _coefs(y: np.ndarray, Q: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Least-squares coefficient of each row of `labels` ([B, m]) on y given the nuisance basis Q ([m, k])."""
    r = y - Q @ (Q.T @ y)
    num = labels @ r
    LQ = labels @ Q
    total = np.einsum("bi,bi->b", labels, labels)
    den = total - np.einsum("bk,bk->b", LQ, LQ)
    ok = den > 1e-9 * np.maximum(total, 1e-300)
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def _multiset(types: np.ndarray) -> np.ndarray:
    """Every distinct arrangement of the values in `types` over its positions: [arrangements, positions]."""
    values, counts = np.unique(types, return_counts=True)
    n = len(types)
    if len(values) == 2:  # the common case, at C speed: the positions of the second value
        out = np.full((math.comb(n, int(counts[1])), n), values[0])
        chosen = np.array(list(combinations(range(n), int(counts[1]))), int).reshape(len(out), -1)
        np.put_along_axis(out, chosen, values[1], axis=1)
        return out

    def rec(free: list[int], k: int) -> Iterator[dict[int, int]]:
        if k == len(values) - 1:
            yield dict.fromkeys(free, k)
            return
        for chosen in combinations(free, int(counts[k])):
            rest = [i for i in free if i not in set(chosen)]
            for tail in rec(rest, k + 1):
                yield dict.fromkeys(chosen, k) | tail

    return np.array([values[[assign[i] for i in range(n)]] for assign in rec(list(range(n)), 0)])


def _n_multiset(types: np.ndarray) -> int:
    _, counts = np.unique(types, return_counts=True)
    out = math.factorial(len(types))
    for c in counts:
        out //= math.factorial(int(c))
    return out


@dataclass
class FactorTest:
    unit: str
    n_units: int
    units_yes: int
    units_no: int
    effect: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p: float = float("nan")
    min_p: float = float("nan")
    n_arrangements: int = 0


def _summarise(test: FactorTest, observed: float, null: np.ndarray, exact: bool, n_arr: int) -> FactorTest:
    tol = 1e-9 * max(np.abs(null).max(initial=0.0), abs(observed), 1e-300)
    extreme = np.abs(null) >= abs(observed) - tol
    if exact:
        test.p = float(extreme.mean())
        test.min_p = float((np.abs(null) >= np.abs(null).max() - tol).mean())
    else:
        test.p = float((1 + extreme.sum()) / (1 + len(null)))
        test.min_p = max(1 / (1 + len(null)), 1 / n_arr)
    test.effect = float(observed)
    hi, lo = np.percentile(null, [97.5, 2.5])
    test.ci_low, test.ci_high = float(observed - hi), float(observed - lo)
    test.n_arrangements = n_arr
    return test


def _dummies(codes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(codes), int(codes.max()) + 1 if len(codes) else 0))
    out[np.arange(len(codes)), codes] = 1.0
    return out


def _key(*codes: np.ndarray) -> np.ndarray:
    """Compact codes 0..k-1 of the combinations of the given codes."""
    combined = np.zeros(len(codes[0]), np.int64)
    for c in codes:  # mixed radix: one integer per combination
        c = np.asarray(c, np.int64)
        combined = combined * (int(c.max(initial=0)) + 1) + c
    return np.unique(combined, return_inverse=True)[1].ravel()


def _means(key: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of v per key (NaN for an empty key) and the count per key."""
    n = np.bincount(key)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(key, v) / n, n


def _constant_within(key: np.ndarray, x: np.ndarray) -> bool:
    ones, n = np.bincount(key, x), np.bincount(key)
    return bool(np.all((ones == 0) | (ones == n)))


@dataclass(frozen=True)
class Design:
    """Integer codes of each transfer's keys, in the order of the gains."""

    source: np.ndarray
    target: np.ndarray  # target dataset/task
    size: np.ndarray
    init: np.ndarray
    seed: np.ndarray

    @staticmethod
    def of(g: pd.DataFrame) -> Design:
        return Design(*(pd.factorize(g[c].astype(str))[0] for c in ("source", "target", "target_size", "init",
                                                                     "seed")))  # fmt: skip

    def take(self, mask: np.ndarray) -> Design:
        return Design(self.source[mask], self.target[mask], self.size[mask], self.init[mask], self.seed[mask])

    @property
    def block(self) -> np.ndarray:  # a baseline: (target, size, seed, init)
        return _key(self.target, self.size, self.seed, self.init)

    @property
    def stratum(self) -> np.ndarray:  # (size, init)
        return _key(self.size, self.init)


def _profile_test(k: Design, y: np.ndarray, x: np.ndarray, unit: str, n_perm: int,
                  rng: np.random.Generator) -> FactorTest | None:  # fmt: skip
    """Source- or target-level: labels permuted across units, each keeping its profile over the strata."""
    other = k.target if unit == "source" else k.source
    centre = _key(other, k.size, k.seed, k.init)  # a target's baseline (for sources; a source's block for targets)
    yc = y - _means(centre, y)[0][centre]
    u, z = _key(getattr(k, unit)), k.stratum
    U, Z = int(u.max()) + 1, int(z.max()) + 1
    ym, n = _means(u * Z + z, yc)
    xm = _means(u * Z + z, x)[0]
    pad = U * Z - len(ym)
    ym, xm, n = np.pad(ym, (0, pad)), np.pad(xm, (0, pad)), np.pad(n, (0, pad))
    complete = (n.reshape(U, Z) > 0).all(axis=1)
    Y, X = ym.reshape(U, Z)[complete], xm.reshape(U, Z)[complete]
    U = len(Y)
    profiles, types = np.unique(X, axis=0, return_inverse=True)
    types = types.ravel()
    if U < 2 or len(profiles) < 2:
        return None
    test = FactorTest(f"{unit}s", U, int((X == 1).any(axis=1).sum()), int((X == 0).any(axis=1).sum()))
    nuisance = [np.tile(np.eye(Z), (U, 1))]  # stratum effects; cells in unit-major order
    if (X != X[:, :1]).any():  # the factor changes within units: their own effects cancel
        nuisance.append(np.repeat(np.eye(U), Z, axis=0))
    Q = _basis(np.hstack(nuisance))
    yv = Y.ravel()
    observed = _coefs(yv, Q, X.ravel()[None, :])[0]
    n_arr = _n_multiset(types)
    if n_arr <= MAX_EXACT:
        labels = profiles[_multiset(types)].reshape(n_arr, -1)
    else:
        labels = X[rng.permuted(np.broadcast_to(np.arange(U), (n_perm, U)), axis=1)].reshape(n_perm, -1)
    return _summarise(test, observed, _coefs(yv, Q, labels), n_arr <= MAX_EXACT, n_arr)


def _pair_test(k: Design, y: np.ndarray, x: np.ndarray, n_perm: int, rng: np.random.Generator) -> FactorTest | None:
    """Pair-level: source and target effects removed, labels permuted among the sources of each target."""
    yc = y - _means(k.block, y)[0][k.block]
    pair = _key(k.source, k.target, k.init)
    ym, xm = _means(pair, yc)[0], _means(pair, x)[0]
    first = np.unique(pair, return_index=True)[1]
    src, tgt = _key(k.source[first]), _key(k.target[first], k.init[first])
    if src.max() < 1:
        return None
    Q = _basis(np.hstack([_dummies(src), _dummies(tgt)]))
    res = xm - Q @ (Q.T @ xm)
    if res @ res <= 1e-9 * (xm @ xm):
        return None  # no variation within sources and targets
    observed = _coefs(ym, Q, xm[None, :])[0]
    groups = [np.flatnonzero(tgt == t) for t in range(tgt.max() + 1)]
    groups = [i for i in groups if 0 < xm[i].sum() < len(i)]  # targets whose sources differ in the factor
    test = FactorTest("pairs within targets", len(ym), int((xm == 1).sum()), int((xm == 0).sum()))
    n_arr = math.prod(math.comb(len(i), int(xm[i].sum())) for i in groups)
    if n_arr <= MAX_EXACT:
        labels = np.tile(xm, (n_arr, 1))
        choices = [list(combinations(range(len(i)), int(xm[i].sum()))) for i in groups]
        for a, choice in enumerate(product(*choices)):
            for i, chosen in zip(groups, choice, strict=True):
                labels[a, i] = 0.0
                labels[a, i[list(chosen)]] = 1.0
    else:
        labels = np.tile(xm, (n_perm, 1))
        for i in groups:
            labels[:, i] = rng.permuted(np.broadcast_to(xm[i], (n_perm, len(i))), axis=1)
    return _summarise(test, observed, _coefs(ym, Q, labels), n_arr <= MAX_EXACT, n_arr)


def _condition_test(k: Design, y: np.ndarray, x: np.ndarray, cond: str, n_perm: int,
                    rng: np.random.Generator) -> FactorTest | None:  # fmt: skip
    """Condition-level (size, init): each pair's difference between its two conditions, signs flipped per target."""
    pair = _key(k.source, k.target, k.init if cond == "size" else k.size)
    P = int(pair.max()) + 1
    ym = _means(pair * 2 + x.astype(int), y)[0]
    ym = np.pad(ym, (0, 2 * P - len(ym)), constant_values=np.nan).reshape(P, 2)
    both = ~np.isnan(ym).any(axis=1)
    if not both.any():
        return None
    diff = ym[both, 1] - ym[both, 0]  # yes minus no
    first = np.unique(pair, return_index=True)[1]
    tgt = _key(k.target[first][both])
    T = int(tgt.max()) + 1
    test = FactorTest(f"targets ({cond}s swapped)", T, T, T)
    # the mean difference, with each target's pairs' signs flipped together: only the targets' sums matter
    per_target = np.bincount(tgt, diff) / len(diff)
    if 2**T <= MAX_EXACT:
        signs = 1.0 - 2.0 * ((np.arange(2**T)[:, None] >> np.arange(T)) & 1)  # [2^T, T], the first all +1
    else:
        signs = rng.choice([1.0, -1.0], size=(n_perm, T))
    return _summarise(test, float(per_target.sum()), signs @ per_target, 2**T <= MAX_EXACT, 2**T)


def _distinct_profiles(k: Design, x: np.ndarray, unit: str) -> bool:
    u, z = _key(getattr(k, unit)), k.stratum
    wide = np.full((int(u.max()) + 1, int(z.max()) + 1), -1.0)
    wide[u, z] = x
    return len(np.unique(wide, axis=0)) > 1


def structured_test(g: pd.DataFrame, factor: str, n_perm: int = 2000, seed: int = 0,
                    design: Design | None = None) -> FactorTest | None:  # fmt: skip
    """The factor's permutation test at the level where it varies (see the module); None when no scheme fits.

    `design` (`Design.of(g)`) saves recomputing the keys' codes for each factor.
    """
    mask = (g["gain"].notna() & g[factor].notna()).to_numpy()
    k = (design or Design.of(g)).take(mask)
    x = g[factor][mask].astype(bool).to_numpy(float)
    return test_arrays(k, x, g["gain"][mask].to_numpy(float), n_perm, np.random.default_rng(seed))


def test_arrays(k: Design, x: np.ndarray, y: np.ndarray, n_perm: int, rng: np.random.Generator) -> FactorTest | None:
    """`structured_test` on the codes, labels (0/1) and gains of the transfers where the factor is defined."""
    if len(np.unique(x)) < 2:
        return None
    for cond in ("size", "init"):
        codes = getattr(k, cond)
        if len(np.unique(codes)) == 2 and _constant_within(_key(codes), x):
            return _condition_test(k, y, x, cond, n_perm, rng)
    for unit in ("source", "target"):
        if _constant_within(_key(getattr(k, unit), k.stratum), x) and _distinct_profiles(k, x, unit):
            return _profile_test(k, y, x, unit, n_perm, rng)
    if _constant_within(_key(k.source, k.target, k.init), x):
        return _pair_test(k, y, x, n_perm, rng)
    return None


test_arrays.__test__ = False  # not a pytest test


def compare(g: pd.DataFrame, factor: Factor, n_perm: int = 2000, seed: int = 0,
            design: Design | None = None) -> dict:  # fmt: skip
    """One factor's row of the factor table."""
    col = g[factor.name]
    a = g.loc[col == True, "gain"].to_numpy(float)  # noqa: E712  (nullable booleans)
    b = g.loc[col == False, "gain"].to_numpy(float)  # noqa: E712
    nan = float("nan")
    row = {"factor": factor.name, "question": factor.question, "yes": factor.yes, "no": factor.no,
           "n_yes": len(a), "n_no": len(b), "testable": len(a) > 0 and len(b) > 0,
           "median_yes": float(np.median(a)) if len(a) else nan,
           "median_no": float(np.median(b)) if len(b) else nan}  # fmt: skip
    test = structured_test(g, factor.name, n_perm, seed, design) if row["testable"] else None
    test = test or FactorTest("", 0, 0, 0)
    row |= {"unit": test.unit, "n_units": test.n_units, "units_yes": test.units_yes, "units_no": test.units_no,
            "effect": test.effect, "ci_low": test.ci_low, "ci_high": test.ci_high, "p": test.p,
            "min_p": test.min_p, "n_arrangements": float(test.n_arrangements)}  # fmt: skip (a float: beyond int64)
    return row


def factor_table(g: pd.DataFrame, n_perm: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The factor table without the correction: one row per factor of `FACTORS`, each tested at its level."""
    g = g[g["gain"].notna()]
    design = Design.of(g)
    with one_blas_thread():
        return pd.DataFrame([compare(g, f, n_perm, seed + i, design) for i, f in enumerate(FACTORS)])


def factor_tests(g: pd.DataFrame, n_perm: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The factor table (`factor_table`) with `p_holm`: Holm's correction over the factors with a p-value."""
    table = factor_table(g, n_perm, seed)
    table["p_holm"] = holm(table["p"].to_numpy(float))
    return table


# -- the joint model ----------------------------------------------------------------------------------------------

JOINT = ("same_domain", "same_task", "includes_target_domain", "source_larger", "multi_source", "generic_init")
COMPONENTS = {
    "source": "a source's quality beyond the factors, shared by all its transfers",
    "target": "a target's level, shared by all transfers onto it",
    "pair": "a (source, target) pair's own effect, the same at every seed and size",
    "baseline": "a baseline's noise (one target, size, seed and init), shared by its transfers",
    "residual": "a transfer's own seed noise",
}


def _groupings(g: pd.DataFrame) -> dict[str, np.ndarray]:
    """Codes of the random-effect groupings the data can separate (>= 2 levels, fewer than the transfers, no two
    alike: with one size and one seed a baseline is its target, and a pair one transfer)."""
    target = g["target"] + "|" + g["init"].astype(str)
    keys = {"source": [g["source"]], "target": [target], "pair": [g["source"], target],
            "baseline": [target, g["target_size"].astype(str), g["seed"].astype(str)]}
    out: dict[str, np.ndarray] = {}
    for name, cols in keys.items():
        codes = pd.MultiIndex.from_arrays(cols).factorize()[0] if len(cols) > 1 else pd.factorize(cols[0])[0]
        levels = int(codes.max()) + 1 if len(codes) else 0
        if not 2 <= levels < len(g):
            continue
        same = any(len(set(zip(codes, c, strict=True))) == levels == int(c.max()) + 1 for c in out.values())
        if not same:
            out[name] = codes
    return out


def mixed_model(g: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain on every factor that varies (and the log target size) jointly, with crossed random effects.

    Returns (model, variance). model: one row per fixed term with coef, se, z, a Wald p (normal) and n.
    variance: one row per random effect the data can separate (source, target, pair, baseline) and the
    residual, with what it is, its levels, variance, sd and share of the total. Fitted by REML
    (`analysis.mixed.fit_mixed`, statsmodels' MixedLM model). Undefined (NaN) gains are dropped.
    """
    g = g[g["gain"].notna()]
    empty = (pd.DataFrame(columns=["term", "coef", "se", "z", "p", "n"]),
             pd.DataFrame(columns=["component", "what", "levels", "variance", "sd", "share"]))  # fmt: skip
    terms = {}
    for f in JOINT:
        col = g[f].astype("float")
        if col.notna().all() and col.nunique() > 1:
            terms[f] = col.to_numpy()
    logsize = np.log(g["target_size"].astype(float).to_numpy())
    if np.unique(logsize).size > 1:
        terms["log_target_size"] = logsize
    X = np.column_stack([np.ones(len(g)), *terms.values()]) if len(g) else np.zeros((0, 1))
    names = ["intercept", *terms]
    # drop terms collinear with earlier ones (e.g. same_domain == includes_target_domain for single sources)
    keep: list[int] = []
    for j in range(X.shape[1]):
        if np.linalg.matrix_rank(X[:, [*keep, j]]) == len(keep) + 1:
            keep.append(j)
    X, names = X[:, keep], [names[j] for j in keep]
    n, k = X.shape
    if n <= k + 1:
        return empty
    groupings = _groupings(g)
    fit = fit_mixed(g["gain"].to_numpy(float), X, names, groupings)
    z = fit.coef / fit.se
    model = pd.DataFrame({"term": names, "coef": fit.coef, "se": fit.se, "z": z,
                          "p": 2 * stats.norm.sf(np.abs(z)), "n": n})  # fmt: skip
    total = sum(fit.variances.values())
    variance = pd.DataFrame([{"component": c, "what": COMPONENTS[c],
                              "levels": fit.levels.get(c, n), "variance": v, "sd": np.sqrt(v),
                              "share": v / total if total > 0 else float("nan")}
                             for c, v in fit.variances.items()])  # fmt: skip
    return model, variance


def linear_model(g: pd.DataFrame) -> pd.DataFrame:
    """The fixed effects of `mixed_model`: one row per term with coef, se, z, p and n."""
    return mixed_model(g)[0]


# -- one-sample tests on a set of transfers ------------------------------------------------------------------------


def sign_flip_test(values: np.ndarray, clusters: np.ndarray, n_perm: int = 2000, seed: int = 0) -> dict:
    """Is the mean of `values` 0? Signs flipped per cluster (the unit of replication), its values together.

    Returns mean, p (two-sided, exact over all 2^clusters flips up to `MAX_EXACT`), min_p (the smallest p
    possible with that many clusters) and n_clusters. Valid when each cluster's values are symmetric about 0
    under the null, whatever they share within the cluster.
    """
    values = np.asarray(values, float)
    c = _key(np.asarray(pd.factorize(pd.Series(clusters))[0]))
    C = int(c.max()) + 1 if len(c) else 0
    if C == 0:
        return {"mean": float("nan"), "p": float("nan"), "min_p": float("nan"), "n_clusters": 0}
    sums = np.bincount(c, values) / len(values)
    if 2**C <= MAX_EXACT:
        signs = 1.0 - 2.0 * ((np.arange(2**C)[:, None] >> np.arange(C)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([1.0, -1.0], size=(n_perm, C))
    t = FactorTest("", C, C, C)
    _summarise(t, float(sums.sum()), signs @ sums, 2**C <= MAX_EXACT, 2**C)
    return {"mean": t.effect, "p": t.p, "min_p": t.min_p, "n_clusters": C}


def crossed_mean_test(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict:
    """Is the mean of `values` 0, when values share effects by source and by target (crossed)?

    A t-test of the mean with a variance robust to both clusterings (Cameron, Gelbach and Miller 2011):
    V = V_source + V_target - V_pair, each a cluster-robust variance with its G / (G - 1) correction, and
    min(sources, targets) - 1 degrees of freedom. No permutation is exact for a mean under crossed effects.
    Returns mean, se, p, df, n_sources and n_targets.
    """
    v = np.asarray(values, float)
    s, t = pd.factorize(pd.Series(source))[0], pd.factorize(pd.Series(target))[0]
    S, T, n = int(s.max()) + 1 if len(s) else 0, int(t.max()) + 1 if len(t) else 0, len(v)
    out = {"mean": float(v.mean()) if n else float("nan"), "se": float("nan"), "p": float("nan"), "df": 0,
           "n_sources": S, "n_targets": T}  # fmt: skip
    if min(S, T) < 2:
        return out
    e = v - v.mean()

    def robust(codes: np.ndarray) -> float:
        G = int(codes.max()) + 1
        return G / (G - 1) * float((np.bincount(codes, e) ** 2).sum()) / n**2 if G > 1 else 0.0

    pair = _key(s, t)
    var = robust(s) + robust(t) - robust(pair)
    var = var if var > 0 else max(robust(s), robust(t))
    df = min(S, T) - 1
    se = np.sqrt(var)
    p = float(2 * stats.t.sf(abs(out["mean"]) / se, df)) if se > 0 else float("nan")
    out |= {"se": float(se), "df": df, "p": p}
    return out
