"""Budgeted sweeps: which (target, source) transfers to finetune when only a fraction of the matrix can be paid for.

    result = run_policy(table, reveal, budget=0.2)          # the budgeted policy: proxies first, then a model
    result.order                                            # the pairs run, in order, with their measured values
    result.predicted                                        # every pair: measured value or prediction with interval
    predict_matrix(table, known=measured)                   # the same prediction, revealing nothing
    result.recommended(k=3)                                 # per target, the best sources and their P(best)
    run_policy(table, reveal, budget=0.3, known=measured)   # a larger budget: reuses the pairs already run
    replay(complete_table, budget=0.2)                      # budgeted vs random vs proxy-top-k: replay_metrics each

`table` has one row per (target, source) pair: `target`, `source`, one or more `proxy.NAME` columns (a
transferability score of the source on the target, higher = expected to transfer better), and optionally the
metadata `same_domain`, `same_task` (booleans) and `source_size` (positive number). `reveal(pairs)` returns the
measured values of a batch of (target, source) pairs (the live sweep, matrix/budget.py, finetunes them at once on
the cluster; a replay reads them from a complete table with a `value` column). `budget` is the fraction of the
table's pairs that may be revealed: floor(budget x pairs).
Everything here is a pure function of its arguments and `seed` (a numpy Generator per call).

The budgeted policy (`run_policy`):

1. **Proxies first.** Each proxy is z-scored within its target (across that target's sources); their mean is the
   combined score. Each target's top-`first` sources by the combined score are revealed (all targets' top-1
   first, then their second, ...).
2. **A model of the value matrix** on what was measured, in `rounds` rounds. Values (sign-adjusted so that
   higher is better, then standardised) are fitted as

       v[t, s] = mu + a_t + b_s + w . x[t, s] + u_t . v_s

   with per-target and per-source offsets a, b, the proxies' per-target z-scores and the metadata as features x
   (standardised), and a rank-`rank` term u_t . v_s; every term but mu has a ridge penalty `ridge`. It is fitted by
   alternating least squares (the linear part given the low-rank term, then u given v, v given u; 20 sweeps).
   Rank 1 by default: on planted rank-2 tables (bench/replay_bench.py) ranks 0, 1 and 2 found the best source
   equally often at budget 0.2; a handful of measurements per target cannot pin more loadings.
   The uncertainty of each prediction is the spread over `bootstrap` refits on resampled measured pairs.
3. **Optimism in each target.** Each round reveals the unrun pairs with the highest upper confidence bound
   relative to the best value measured in their target, mean + `kappa` x sd - best_t (a target with nothing
   run comes first; one whose runs all failed counts its best predicted mean as best_t). Within a round, a
   picked pair's predicted mean is taken as measured for its target (the "kriging believer"), so one round
   spreads over targets rather than piling onto one. The live sweep runs each round's pairs at once.

The result's `predicted` frame gives every pair's measured value or predicted mean with a 95% interval
(mean +- 1.96 sqrt(bootstrap variance + out-of-bag residual variance)) and `p_best`: the fraction of bootstrap
refits, measured cells held at their values, in which the pair is its target's best.

Baselines at the same budget: `random_policy` (pairs drawn uniformly) and `proxy_top_k_policy` (every target's
top-1 by the combined proxy score, then every target's second, ...). `replay_metrics` scores a set of run pairs
against a complete table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve

PROXY_PREFIX = "proxy."
FLAGS = ("same_domain", "same_task")  # optional boolean metadata
SIZE = "source_size"  # optional positive metadata, used on a log scale
METRICS = ("pairs_run", "best_found", "top3_recall", "mean_regret")
Reveal = Callable[[list[tuple[str, str]]], Sequence[float]]  # (target, source) pairs -> their measured values
_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


class TableError(ValueError):
    """A table that does not have the expected form: `field` (a column, or 'target, source') and what was expected.

    str(e) is one line: '<field>: <what was expected>'.
    """

    def __init__(self, field: str, expected: str):
        super().__init__(f"{field}: {expected}")
        self.field = field
        self.expected = expected


def proxy_columns(table: pd.DataFrame) -> list[str]:
    """The `proxy.NAME` columns of `table`, in their order."""
    return [c for c in table.columns if isinstance(c, str) and c.startswith(PROXY_PREFIX) and len(c) > len(PROXY_PREFIX)]


_MISSING = {"", "nan", "na", "n/a", "null", "none"}  # spellings of a missing number in a CSV read as text


def _numeric(column: pd.Series, name: str) -> pd.Series:
    if column.dtype == object:
        column = column.where(~column.astype(str).str.strip().str.lower().isin(_MISSING))
    values = pd.to_numeric(column, errors="coerce").astype(np.float64)
    bad = values.isna() & column.notna()
    bad |= np.isinf(values)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableError(name, f"non-numeric entry {column.iloc[row]!r} in row {row + 1} of the table; expected a number")
    return values


def _flag(column: pd.Series, name: str) -> pd.Series:
    if column.dtype == bool:
        return column.astype(np.float64)
    text = column.astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableError(name, f"entry {column.iloc[row]!r} in row {row + 1} of the table; "
                               "expected true or false (1 or 0)")  # fmt: skip
    return text.isin(_TRUE).astype(np.float64)


def check_table(table: pd.DataFrame, need_value: bool = True, need_proxy: bool = True) -> pd.DataFrame:
    """A normalised copy of a pairs table, or a `TableError` naming the first problem.

    Returns `target`, `source` (str), `value` (float, if `need_value`: every pair must have one), every
    `proxy.NAME` (float, NaN allowed: a proxy that could not be computed; at least one if `need_proxy`), and the
    metadata present (`same_domain`, `same_task` as 0/1 floats, `source_size` float > 0), with a fresh RangeIndex.
    One row per (target, source).
    """
    need = ["target", "source", *(["value"] if need_value else [])]
    listing = ", ".join(need) + (" and at least one proxy.NAME" if need_proxy else "")
    for col in need:
        if col not in table.columns:
            raise TableError(col, f"missing column; expected columns {listing}")
    proxies = proxy_columns(table)
    if need_proxy and not proxies:
        raise TableError("proxy.*", "no proxy column; expected at least one column named proxy.NAME (e.g. proxy.logme)")
    if len(table) == 0:
        raise TableError("target", "no rows; expected one row per (target, source) pair")
    table = table.reset_index(drop=True)
    out = pd.DataFrame(index=table.index)
    for col in ("target", "source"):
        empty = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if empty.any():
            raise TableError(col, f"empty entry in row {int(np.flatnonzero(empty.to_numpy())[0]) + 1} of the table; "
                                  "expected a name")  # fmt: skip
        out[col] = table[col].astype(str)
    dup = out.duplicated(["target", "source"])
    if dup.any():
        t, s = out.loc[dup.idxmax(), ["target", "source"]]
        raise TableError("target, source", f"duplicate pair ({t!r}, {s!r}); expected one row per (target, source) pair")
    if need_value:
        out["value"] = _numeric(table["value"], "value")
        missing = out["value"].isna()
        if missing.any():
            t, s = out.loc[missing.idxmax(), ["target", "source"]]
            raise TableError("value", f"no value for pair ({t!r}, {s!r}); expected a complete table, a number per pair")
    for col in proxies:
        out[col] = _numeric(table[col], col)
    for col in FLAGS:
        if col in table.columns:
            out[col] = _flag(table[col], col)
    if SIZE in table.columns:
        out[SIZE] = _numeric(table[SIZE], SIZE)
        if (out[SIZE].isna() | (out[SIZE] <= 0)).any():
            raise TableError(SIZE, "expected a positive number (images in the source) for every pair")
    return out


def budget_pairs(n_pairs: int, budget: float) -> int:
    """floor(budget x n_pairs): the pairs a budget allows (budget in (0, 1], at least one pair), else ValueError."""
    if not (0 < budget <= 1):
        raise ValueError(f"budget: {budget} is outside (0, 1]; expected the fraction of the pairs to run, e.g. 0.2")
    n = int(math.floor(budget * n_pairs + 1e-9))
    if n < 1:
        raise ValueError(f"budget: {budget} x {n_pairs} pairs is less than one pair; expected at least {1 / n_pairs:.3g}")
    return n


def proxy_zscores(table: pd.DataFrame) -> pd.DataFrame:
    """Each `proxy.NAME` column z-scored within its target (population sd; 0 where a target's proxy is constant),
    NaN where the proxy is NaN; columns named as in `table`, index as `table`'s."""
    cols = proxy_columns(table)
    g = table.groupby("target", sort=False)[cols]
    mean, sd = g.transform("mean"), g.transform(lambda c: c.std(ddof=0))
    z = (table[cols] - mean) / sd.where(sd > 0)
    return z.where(table[cols].isna() | (sd > 0), 0.0)


def combined_score(table: pd.DataFrame) -> pd.Series:
    """The combined proxy score per pair: the mean of the proxies' per-target z-scores (NaN ones left out; 0 if all
    are NaN)."""
    return proxy_zscores(table).mean(axis=1).fillna(0.0).rename("combined")


def _proxy_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions: every target's top source by the combined score, then every target's second, ...; ties
    between targets by the higher score, then by target and source name (so the order does not depend on row
    order)."""
    z = combined_score(table).to_numpy()
    frame = pd.DataFrame({"target": table["target"], "source": table["source"], "z": z})
    frame["rank"] = frame.sort_values(["z", "source"], ascending=[False, True]).groupby("target").cumcount()
    return frame.sort_values(["rank", "z", "target", "source"], ascending=[True, False, True, True]).index.to_numpy()


@dataclass(frozen=True)
class PolicyResult:
    """What a policy ran: `order` (step, target, source, value, phase: one row per revealed pair, in order),
    `predicted` (budgeted policy only, else None: every pair with `measured`, `value` (NaN where unrun), `mean`,
    `lower`, `upper` (the measured value where measured; the prediction and its 95% interval elsewhere), `p_best`),
    `budget_pairs`, the pairs the budget allowed, and `higher_is_better`, the values' direction."""

    policy: str
    order: pd.DataFrame
    predicted: pd.DataFrame | None
    budget_pairs: int
    higher_is_better: bool = True

    def recommended(self, k: int = 1) -> pd.DataFrame:
        """Per target, its k best sources (`recommended`); baselines rank only what they measured."""
        if self.predicted is not None:
            frame = self.predicted
        else:
            frame = self.order.assign(measured=True, mean=self.order["value"], lower=self.order["value"],
                                      upper=self.order["value"], p_best=np.nan)  # fmt: skip
        return recommended(frame, k, self.higher_is_better)


def recommended(predicted: pd.DataFrame, k: int = 1, higher_is_better: bool = True,
                keep: tuple[str, ...] = ()) -> pd.DataFrame:  # fmt: skip
    """Per target of a `predicted` frame (PolicyResult.predicted), its k best sources by measured value or predicted
    mean: the `keep` columns (e.g. the target's task type), target, rank (1 = best), source, measured, mean, lower,
    upper, p_best."""
    key = predicted["mean"] if higher_is_better else -predicted["mean"]
    ranked = predicted.assign(_key=key).sort_values(["target", "_key", "source"], ascending=[True, False, True])
    ranked["rank"] = ranked.groupby("target").cumcount() + 1
    cols = [*keep, "target", "rank", "source", "measured", "mean", "lower", "upper", "p_best"]
    return ranked.loc[ranked["rank"] <= k, cols].reset_index(drop=True)


def _order_frame(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["target", "source", "value", "phase"])
    frame.insert(0, "step", np.arange(len(frame)))
    return frame


def random_policy(table: pd.DataFrame, reveal: Reveal, budget: float, seed: int = 0,
                  higher_is_better: bool = True) -> PolicyResult:  # fmt: skip
    """Baseline: floor(budget x pairs) pairs drawn uniformly without replacement (numpy Generator `seed`), revealed
    in the drawn order. `higher_is_better` is only recorded (for `recommended`)."""
    tab = check_table(table, need_value=False)
    n = budget_pairs(len(tab), budget)
    return PolicyResult("random", _revealed(reveal, _random_pairs(tab, n, seed), "random"), None, n, higher_is_better)


def _revealed(reveal: Reveal, pairs: list[tuple[str, str]], phase: str) -> pd.DataFrame:
    """`order` for `pairs` revealed in one batch."""
    values = list(reveal(pairs))
    if len(values) != len(pairs):
        raise ValueError(f"reveal: returned {len(values)} values for {len(pairs)} pairs; expected one per pair")
    return _order_frame([(t, s, float(v), phase) for (t, s), v in zip(pairs, values)])


def _random_pairs(tab: pd.DataFrame, n: int, seed: int) -> list[tuple[str, str]]:
    canonical = tab.sort_values(["target", "source"])  # row order does not matter
    picks = np.random.default_rng(seed).permutation(len(tab))[:n]
    return list(zip(canonical["target"].to_numpy()[picks], canonical["source"].to_numpy()[picks]))


def proxy_top_k_policy(table: pd.DataFrame, reveal: Reveal, budget: float,
                       higher_is_better: bool = True) -> PolicyResult:  # fmt: skip
    """Baseline: the proxies alone at the same budget: every target's top source by the combined proxy score
    (mean of per-target z-scores), then every target's second, ... until floor(budget x pairs) are revealed.
    `higher_is_better` is only recorded (for `recommended`)."""
    tab = check_table(table, need_value=False)
    n = budget_pairs(len(tab), budget)
    picks = _proxy_order(tab)[:n]
    pairs = list(tab.loc[picks, ["target", "source"]].itertuples(False, None))
    return PolicyResult("proxy_top_k", _revealed(reveal, pairs, "proxy"), None, n, higher_is_better)


# ---------------------------------------------------------------------------------------------------------------
# The model of the value matrix


def _features(tab: pd.DataFrame) -> np.ndarray:
    """Pair features [n, P]: the proxies' per-target z-scores and the metadata, each standardised over the table;
    constant columns dropped."""
    parts = [proxy_zscores(tab).fillna(0.0).to_numpy()]
    for col in FLAGS:
        if col in tab.columns:
            parts.append(tab[[col]].to_numpy())
    if SIZE in tab.columns:
        parts.append(np.log(tab[[SIZE]].to_numpy()))
    x = np.concatenate(parts, axis=1)
    sd = x.std(axis=0)
    keep = sd > 1e-12
    return (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]


def _ridge_rows(group: np.ndarray, z: np.ndarray, r: np.ndarray, n_groups: int, lam: float) -> np.ndarray:
    """Per group g, argmin_u sum_{i in g} (r_i - z_i . u)^2 + lam |u|^2, batched: [n_groups, k]."""
    k = z.shape[1]
    rhs = np.stack([np.bincount(group, z[:, i] * r, n_groups) for i in range(k)], axis=1)
    if k == 1:
        return rhs / (np.bincount(group, z[:, 0] ** 2, n_groups) + lam)[:, None]
    a = np.empty((n_groups, k, k))
    for i in range(k):
        for j in range(i, k):
            a[:, i, j] = a[:, j, i] = np.bincount(group, z[:, i] * z[:, j], n_groups)
    a += lam * np.eye(k)
    return np.linalg.solve(a, rhs[:, :, None])[:, :, 0]


@dataclass(frozen=True)
class _Model:
    n_targets: int
    n_sources: int
    x: np.ndarray  # [n, P] features of every pair
    ti: np.ndarray  # [n] target index of every pair
    si: np.ndarray  # [n] source index of every pair
    rank: int
    ridge: float
    sweeps: int = 20

    def fit_predict(self, rows: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Fit on the pairs `rows` (repeats allowed) with standardised values `y`; predict every pair [n]."""
        t, s, x = self.ti[rows], self.si[rows], self.x[rows]
        n_t, n_s, p = self.n_targets, self.n_sources, self.x.shape[1]
        design = np.zeros((len(rows), 1 + n_t + n_s + p))
        design[:, 0] = 1.0
        design[np.arange(len(rows)), 1 + t] = 1.0
        design[np.arange(len(rows)), 1 + n_t + s] = 1.0
        design[:, 1 + n_t + n_s :] = x
        penalty = np.full(design.shape[1], self.ridge)
        penalty[0] = 1e-8
        factor = cho_factor(design.T @ design + np.diag(penalty))
        u = np.zeros((n_t, self.rank))
        v = rng.normal(0.0, 0.1, (n_s, self.rank))
        theta = np.zeros(design.shape[1])
        for _ in range(self.sweeps if self.rank else 1):
            resid = y - (u[t] * v[s]).sum(axis=1)
            theta = cho_solve(factor, design.T @ resid)
            if self.rank:
                r2 = y - design @ theta
                u = _ridge_rows(t, v[s], r2, n_t, self.ridge)
                v = _ridge_rows(s, u[t], r2, n_s, self.ridge)
        return (theta[0] + theta[1 + self.ti] + theta[1 + n_t + self.si] + self.x @ theta[1 + n_t + n_s :]
                + (u[self.ti] * v[self.si]).sum(axis=1))  # fmt: skip

    def fit(self, measured: np.ndarray, y: np.ndarray, bootstrap: int, rng: np.random.Generator):
        """Mean [n], bootstrap sd [n], bootstrap draws [B, n] and out-of-bag residual sd, in the units of `y`
        (values of the pairs `measured`, sign-adjusted so that higher is better)."""
        centre, scale = float(y.mean()), float(y.std()) or 1.0
        yz = (y - centre) / scale
        mean = self.fit_predict(measured, yz, rng)
        draws, oob = [], []
        for _ in range(bootstrap):
            pick = rng.integers(0, len(measured), len(measured))
            pred = self.fit_predict(measured[pick], yz[pick], rng)
            draws.append(pred)
            out = np.setdiff1d(np.arange(len(measured)), pick)
            oob.append(yz[out] - pred[measured[out]])
        draws = np.array(draws) if draws else mean[None, :]
        resid = np.concatenate(oob) if oob else yz - mean[measured]
        noise = float(np.sqrt(np.mean(resid**2))) if len(resid) else 0.0
        return centre + scale * mean, scale * draws.std(axis=0), centre + scale * draws, scale * noise


def run_policy(table: pd.DataFrame, reveal: Reveal, budget: float, higher_is_better: bool = True, seed: int = 0, *,
               known: Mapping[tuple[str, str], float] | None = None, first: int = 1, rounds: int = 12,
               bootstrap: int = 16, kappa: float = 1.0, rank: int = 1, ridge: float = 1.0) -> PolicyResult:  # fmt: skip
    """The budgeted policy (module docstring): reveal floor(budget x pairs) pairs of `table`, return their order
    and the predicted matrix.

    `reveal(pairs)` is called once per batch, with the (target, source) pairs to run now, and returns their
    measured values in that order (NaN: the run failed; it counts against the budget and is not fitted): first
    the proxy phase's pairs, then one batch per round. The live sweep runs a batch at once on the cluster; a replay
    reads the values from a complete table. `higher_is_better` is the value's direction; proxies are always read
    as higher = better transfer. `first` sources per target are chosen by the proxies alone; the rest of the
    budget is spent in `rounds` rounds, each refitting the model (rank-`rank` term, `ridge` penalty, `bootstrap`
    refits for its uncertainty) and revealing the unrun pairs with the highest mean + `kappa` sd above their
    target's best measured value. Deterministic given `seed`.

    `known` maps (target, source) pairs already measured (an earlier, smaller budget) to their values: they count
    against the budget, are never revealed again, head `order` (phase "known") and are fitted from the start, so
    rerunning with a larger budget spends only the difference. Known pairs that already fill the budget reveal
    nothing more.
    """
    if first < 0 or rounds < 1 or bootstrap < 0 or rank < 0 or ridge <= 0:
        raise ValueError(f"expected first >= 0, rounds >= 1, bootstrap >= 0, rank >= 0 and ridge > 0; got first {first}, "
                         f"rounds {rounds}, bootstrap {bootstrap}, rank {rank}, ridge {ridge}")  # fmt: skip
    state = _State(table, higher_is_better, known, rank, ridge, seed)
    n_budget = max(budget_pairs(len(state.tab), budget), state.n_run)

    def take(picks: list[int], phase: str) -> None:
        pairs = [state.pair(i) for i in picks]
        values = list(reveal(pairs)) if pairs else []
        if len(values) != len(pairs):
            raise ValueError(f"reveal: returned {len(values)} values for {len(pairs)} pairs; expected one per pair")
        for i, value in zip(picks, values):
            state.measure(i, float(value), phase)

    take([int(i) for i in _proxy_order(state.tab)[: first * len(state.targets)] if not state.run[i]]
         [: n_budget - state.n_run], "proxy")  # fmt: skip
    for left in range(rounds, 0, -1):
        if state.n_run >= n_budget:
            break
        batch = math.ceil((n_budget - state.n_run) / left)
        mean, sd, _, _ = _fit(state.model, state.y, state.run, bootstrap, state.rng)
        best = state.best()
        # a target whose runs all failed (no value): as if its best were the model's best guess, so it is not
        # first in line again and again (a target nothing was run on is)
        failed = np.isneginf(best) & (np.bincount(state.ti[state.run], minlength=len(best)) > 0)
        if failed.any():
            guess = np.full(len(best), -np.inf)
            np.maximum.at(guess, state.ti, mean)
            best[failed] = guess[failed]
        picks: list[int] = []
        taken = state.run.copy()
        for _ in range(batch):
            gain = mean + kappa * sd - best[state.ti]
            gain = np.where(np.isfinite(best[state.ti]), gain, np.inf)  # a target with nothing measured first
            gain[taken] = -np.inf
            i = int(np.argmax(gain))
            picks.append(i)
            taken[i] = True
            best[state.ti[i]] = max(best[state.ti[i]], mean[i])  # the kriging believer: as if measured at its mean
        take(picks, "model")
    return PolicyResult("budgeted", _order_frame(state.rows), state.predicted(bootstrap), n_budget, higher_is_better)


def predict_matrix(table: pd.DataFrame, known: Mapping[tuple[str, str], float], higher_is_better: bool = True,
                   seed: int = 0, *, bootstrap: int = 16, rank: int = 1, ridge: float = 1.0) -> pd.DataFrame:  # fmt: skip
    """The budgeted policy's model fitted on the `known` pairs alone, revealing nothing: `PolicyResult.predicted`
    for every pair of `table` (what the report of a budgeted sweep shows for the pairs it did not run)."""
    state = _State(table, higher_is_better, known, rank, ridge, seed)
    return state.predicted(bootstrap)


class _State:
    """The policy's bookkeeping over the canonically ordered pairs of a table: what was measured, in which order."""

    def __init__(self, table: pd.DataFrame, higher_is_better: bool, known: Mapping[tuple[str, str], float] | None,
                 rank: int, ridge: float, seed: int) -> None:  # fmt: skip
        tab = check_table(table, need_value=False)
        self.tab = tab = tab.sort_values(["target", "source"]).reset_index(drop=True)  # row order does not matter
        self.sign = 1.0 if higher_is_better else -1.0
        self.targets, self.ti = np.unique(tab["target"].to_numpy(), return_inverse=True)
        self.sources, self.si = np.unique(tab["source"].to_numpy(), return_inverse=True)
        self.model = _Model(len(self.targets), len(self.sources), _features(tab), self.ti, self.si, rank, ridge)
        self.rng = np.random.default_rng(seed)
        self.y = np.full(len(tab), np.nan)  # sign-adjusted measured values
        self.run = np.zeros(len(tab), dtype=bool)
        self.rows: list[tuple[str, str, float, str]] = []
        position = {pair: i for i, pair in enumerate(zip(tab["target"], tab["source"]))}
        for (t, s), value in sorted((known or {}).items()):
            if (str(t), str(s)) not in position:
                raise ValueError(f"known: pair ({t!r}, {s!r}) is not in the table; expected pairs of its rows")
            self.measure(position[str(t), str(s)], float(value), "known")

    @property
    def n_run(self) -> int:
        return len(self.rows)

    def pair(self, i: int) -> tuple[str, str]:
        return str(self.targets[self.ti[i]]), str(self.sources[self.si[i]])

    def measure(self, i: int, value: float, phase: str) -> None:
        self.y[i], self.run[i] = self.sign * value, True
        self.rows.append((*self.pair(i), value, phase))

    def best(self) -> np.ndarray:
        """Per target, the best (sign-adjusted) measured value; -inf where none."""
        best = np.full(len(self.targets), -np.inf)
        ok = self.run & np.isfinite(self.y)
        np.maximum.at(best, self.ti[ok], self.y[ok])
        return best

    def predicted(self, bootstrap: int) -> pd.DataFrame:
        """Every pair: measured value, or the model's mean with a 95% interval; and P(best in its target)."""
        mean, sd, draws, noise = _fit(self.model, self.y, self.run, bootstrap, self.rng)
        half = 1.96 * np.sqrt(sd**2 + noise**2)
        ok = self.run & np.isfinite(self.y)
        mean = np.where(ok, self.y, mean)
        lower, upper = np.where(ok, self.y, mean - half), np.where(ok, self.y, mean + half)
        draws = np.where(ok[None, :], self.y[None, :], draws)  # [B, n]
        table_draws = np.full((len(draws), len(self.targets), len(self.sources)), -np.inf)
        table_draws[:, self.ti, self.si] = draws
        winners = table_draws.argmax(axis=2)  # [B, T]
        p_best = (winners[:, self.ti] == self.si[None, :]).mean(axis=0)
        if self.sign < 0:
            mean, lower, upper = -mean, -upper, -lower
        return pd.DataFrame({"target": self.tab["target"], "source": self.tab["source"], "measured": self.run,
                             "value": np.where(self.run, self.sign * self.y, np.nan), "mean": mean, "lower": lower,
                             "upper": upper, "p_best": p_best})  # fmt: skip


def _fit(model: _Model, y: np.ndarray, run: np.ndarray, bootstrap: int, rng: np.random.Generator):
    """The model on the finite measured values; with nothing measured yet, zero mean and unit sd everywhere."""
    measured = np.flatnonzero(run & np.isfinite(y))
    if len(measured) == 0:
        n = len(y)
        return np.zeros(n), np.ones(n), np.zeros((max(bootstrap, 1), n)), 1.0
    return model.fit(measured, y[measured], bootstrap, rng)


# ---------------------------------------------------------------------------------------------------------------
# Replay


def replay_metrics(table: pd.DataFrame, run: pd.DataFrame | Iterable[tuple[str, str]],
                   higher_is_better: bool = True) -> dict[str, float]:  # fmt: skip
    """How good a set of run pairs is against a complete `table` (target, source, value):

    - `pairs_run`: the fraction of the table's pairs that were run;
    - `best_found`: the fraction of targets whose true best source (any, if tied) was run;
    - `top3_recall`: per target, the fraction of its true top 3 (top min(3, sources)) that was run; averaged;
    - `mean_regret`: per target, the true best value minus the best value among its run pairs, in the value's
      units and sign-adjusted (>= 0 for lower-is-better metrics too); a target with nothing run counts the regret
      of a blind pick, best minus the mean of its values. Averaged over targets.

    `run` is a frame with target and source columns (e.g. `PolicyResult.order`) or (target, source) tuples.
    """
    tab = check_table(table, need_proxy=False)
    pairs = set(map(tuple, run[["target", "source"]].astype(str).to_numpy())) if isinstance(run, pd.DataFrame) \
        else {(str(t), str(s)) for t, s in run}  # fmt: skip
    return _metrics(tab, pairs, higher_is_better)


def _metrics(tab: pd.DataFrame, pairs: set[tuple[str, str]], higher_is_better: bool) -> dict[str, float]:
    """`replay_metrics` on a checked table."""
    score = tab["value"] * (1.0 if higher_is_better else -1.0)
    ran = pd.Series([p in pairs for p in zip(tab["target"], tab["source"])], index=tab.index)
    by = score.groupby(tab["target"])
    best = by.transform("max")
    found = (ran & (score == best)).groupby(tab["target"]).any()
    k = by.transform("size").clip(upper=3)
    order = score.groupby(tab["target"]).rank(method="first", ascending=False)
    cutoff = score.where(order == k).groupby(tab["target"]).transform("max")  # the k-th best: ties count as in the top k
    recall = (ran & (score >= cutoff)).groupby(tab["target"]).sum().clip(upper=k.groupby(tab["target"]).first())
    recall = recall / k.groupby(tab["target"]).first()
    got = score.where(ran).groupby(tab["target"]).max().fillna(by.mean())  # nothing run: a blind pick's mean
    regret = by.max() - got
    return {"pairs_run": float(ran.mean()), "best_found": float(found.mean()), "top3_recall": float(recall.mean()),
            "mean_regret": float(regret.mean())}  # fmt: skip


def replay(table: pd.DataFrame, budget: float, higher_is_better: bool = True, seed: int = 0,
           random_draws: int = 20) -> dict[str, dict[str, float]]:  # fmt: skip
    """The budgeted policy, random selection and proxy-top-k replayed on a complete `table` at the same budget:
    {"budgeted": replay_metrics, "random": ..., "proxy_top_k": ...}. Random is the mean over `random_draws` draws
    (seeds seed, seed + 1, ...), so it estimates what random selection gives, not one lucky draw."""
    tab = check_table(table)
    values = dict(zip(zip(tab["target"], tab["source"]), tab["value"]))

    def reveal(pairs: list[tuple[str, str]]) -> list[float]:
        return [values[pair] for pair in pairs]

    out = {"budgeted": replay_metrics(tab, run_policy(tab, reveal, budget, higher_is_better, seed).order,
                                      higher_is_better)}  # fmt: skip
    n = budget_pairs(len(tab), budget)
    draws = [_metrics(tab, set(_random_pairs(tab, n, seed + i)), higher_is_better) for i in range(random_draws)]
    out["random"] = {k: float(np.mean([d[k] for d in draws])) for k in METRICS}
    out["random"]["pairs_run"] = draws[0]["pairs_run"]  # the same in every draw; a mean could round above it
    out["proxy_top_k"] = replay_metrics(tab, proxy_top_k_policy(tab, reveal, budget).order, higher_is_better)
    return out
