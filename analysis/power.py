"""Power before paying for a study: how likely its design is to detect each factor's effect, by simulation.

    design = design_frame(jobs)                        # one row per planned transfer, with factor columns
    sds = components_from_runs(runs) or ASSUMED        # the spread of gains by unit (a pilot's, or assumed)
    table = power_table(design, sds, effect=0.05)      # per factor: unit, units, min_p, power
    more = units_for_power(design, sds, "source_larger", effect=0.05)   # sources, targets, seeds for 80%

A simulated study has the design's transfers and gains drawn from the study's
structure: `effect` (in gain: 0.05 = 5 points of relative gain) on the factor
tested, a random effect per source, per target, per (source, target) pair and
per baseline (one target, size, seed and init, shared by its transfers), and
a transfer's own noise, with the standard deviations `sds`. Each simulated
study is tested as the report tests it (`factors.test_arrays`: the factor's
permutation test at its level), and the power is the share of studies with
p < ALPHA (before Holm's correction over the factors). A design whose
permutation test cannot reach ALPHA at all (too few units) has power 0.

`units_for_power` grows the design along one axis at a time (its sources
cloned, its targets cloned, or more seeds) until the power reaches `goal`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.factors import FACTORS, Design, add_factors, mixed_model, test_arrays
from analysis.findings import ALPHA
from analysis.gains import baseline_check, mark_gains, transfer_gains
from analysis.load import finished, runs_frame
from analysis.mixed import one_blas_thread

GOAL = 0.8
COMPONENTS = ("source", "target", "pair", "baseline", "residual")


@dataclass(frozen=True)
class Spread:
    """Standard deviations of the gain's random effects, in gain units, and where they come from."""

    source: float
    target: float
    pair: float
    baseline: float
    residual: float
    origin: str

    def describe(self) -> str:
        sds = ", ".join(f"{c} {getattr(self, c):.1%}" for c in COMPONENTS)
        return f"{sds} ({self.origin})"


# a source's quality dominating, as in the studies this project has run; replace it with a pilot's (--pilot)
ASSUMED = Spread(0.05, 0.03, 0.02, 0.03, 0.02, "assumed: no finished runs to measure them on; pass --pilot")
MIN_PILOT = 30  # counted transfers, to estimate the components from


def design_frame(jobs: list) -> pd.DataFrame:
    """One row per planned transfer job (`matrix.plan.Job`), with the analysis's columns and factor columns."""
    recs = [job.tags("design") | {"primary_metric": "gain", "higher_is_better": "true"}
            for job in jobs if job.kind == "transfer"]  # fmt: skip
    if not recs:
        return pd.DataFrame()
    tr = runs_frame(recs)
    tr["source"] = tr["source_dataset"] + "/" + tr["source_task"]
    tr["target"] = tr["target_dataset"] + "/" + tr["target_task"]
    tr["gain"] = 0.0
    return add_factors(tr)


def components_from_runs(runs: pd.DataFrame, origin: str) -> Spread | None:
    """The spread measured on finished runs (the mixed model's variance components), None with too few of them."""
    done = finished(runs)
    g = add_factors(mark_gains(transfer_gains(done), baseline_check(done)))
    counted = g[g["included"] & g["gain"].notna()]
    if len(counted) < MIN_PILOT:
        return None
    _, variance = mixed_model(counted)
    sd = dict(zip(variance["component"], variance["sd"], strict=True))
    # a component the runs cannot separate (one size and one seed: a baseline is its target) is inside the others
    return Spread(*(float(sd.get(c, 0.0)) for c in COMPONENTS),
                  f"measured on {len(counted)} counted transfers of {origin}")  # fmt: skip


@dataclass(frozen=True)
class _Sim:
    """A design ready to simulate: the codes of its keys and of each random effect's levels."""

    k: Design
    codes: dict[str, np.ndarray]
    labels: dict[str, tuple[np.ndarray, np.ndarray]]  # factor -> (rows where defined, 0/1 label)

    @staticmethod
    def of(design: pd.DataFrame) -> _Sim:
        k = Design.of(design)
        target = design["target"] + "|" + design["init"].astype(str)
        codes = {"source": k.source, "target": pd.factorize(target)[0],
                 "pair": pd.factorize(design["source"] + "|" + target)[0],
                 "baseline": pd.factorize(target + "|" + design["target_size"].astype(str) + "|"
                                          + design["seed"].astype(str))[0]}  # fmt: skip
        labels = {}
        for f in FACTORS:
            col = design[f.name]
            rows = col.notna().to_numpy()
            labels[f.name] = (rows, col[rows].astype(bool).to_numpy(float))
        return _Sim(k, codes, labels)

    def gains(self, sds: Spread, x: np.ndarray, rows: np.ndarray, effect: float, rng: np.random.Generator):
        n = len(self.k.source)
        y = rng.normal(0.0, sds.residual, n)
        for c in COMPONENTS[:-1]:
            sd = getattr(sds, c)
            if sd > 0:
                y += rng.normal(0.0, sd, int(self.codes[c].max()) + 1)[self.codes[c]]
        y = y[rows]
        return y + effect * x


def power(design: pd.DataFrame, sds: Spread, factor: str, effect: float, n_sims: int = 200, n_perm: int = 200,
          seed: int = 0, sim: _Sim | None = None) -> dict:  # fmt: skip
    """The share of `n_sims` simulated studies of `design` whose test of `factor` gives p < ALPHA.

    Returns unit, n_units, min_p and power (NaN with unit '' when the design does not vary the factor or no
    permutation scheme covers it).
    """
    sim = sim or _Sim.of(design)
    rows, x = sim.labels[factor]
    k = sim.k.take(rows)
    rng = np.random.default_rng(seed)
    out = {"factor": factor, "unit": "", "n_units": 0, "min_p": float("nan"), "power": float("nan")}
    with one_blas_thread():
        first = test_arrays(k, x, sim.gains(sds, x, rows, effect, rng), n_perm, rng)
        if first is None:
            return out
        out |= {"unit": first.unit, "n_units": first.n_units, "min_p": first.min_p}
        if first.min_p >= ALPHA:
            return out | {"power": 0.0}
        hits = first.p < ALPHA
        for _ in range(n_sims - 1):
            hits += test_arrays(k, x, sim.gains(sds, x, rows, effect, rng), n_perm, rng).p < ALPHA
    return out | {"power": hits / n_sims}


def power_table(design: pd.DataFrame, sds: Spread, effect: float, n_sims: int = 200, n_perm: int = 200,
                seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """`power` for every factor of `FACTORS` (one row each, with the question it answers)."""
    sim = _Sim.of(design)
    rows = [power(design, sds, f.name, effect, n_sims, n_perm, seed + i, sim) | {"question": f.question}
            for i, f in enumerate(FACTORS)]  # fmt: skip
    return pd.DataFrame(rows)


def _clone(design: pd.DataFrame, axis: str, times: int) -> pd.DataFrame:
    """The design with its sources or targets cloned `times` over (same domain, task and size), or its seeds."""
    if axis == "seeds":
        seeds = sorted(design["seed"].unique())
        extra = [design.assign(seed=design["seed"] + (max(seeds) + 1) * i) for i in range(1, times)]
        return pd.concat([design, *extra], ignore_index=True)
    col, ds = ("source", "source_dataset") if axis == "sources" else ("target", "target_dataset")
    copies = [design]
    for i in range(1, times):
        copy = design.copy()
        copy[ds] = copy[ds] + f"~{i}"
        copy[col] = copy[col].str.replace("/", f"~{i}/", n=1, regex=False)
        copies.append(copy)
    return pd.concat(copies, ignore_index=True)


def units_for_power(design: pd.DataFrame, sds: Spread, factor: str, effect: float, goal: float = GOAL,
                    n_sims: int = 100, n_perm: int = 200, seed: int = 0,
                    times: tuple[int, ...] = (2, 3, 4, 6)) -> dict[str, str]:  # fmt: skip
    """For each axis (sources, targets, seeds): the smallest design grown `times` over along it whose power for
    `factor` reaches `goal`, in words ("24 sources (power 0.86)"), or what the largest tried reached."""
    counts = {"sources": design["source"].nunique(), "targets": design["target"].nunique(),
              "seeds": design["seed"].nunique()}  # fmt: skip
    out = {}
    for axis, n in counts.items():
        best = None
        for t in times:
            res = power(_clone(design, axis, t), sds, factor, effect, n_sims, n_perm, seed)
            best = (t, res["power"])
            if res["power"] >= goal:
                break
        t, pw = best
        reached = pw >= goal
        out[axis] = f"{n * t} {axis} (power {pw:.2f})" if reached else f"more than {n * t} {axis} (power {pw:.2f})"
    return out


def plan_power(design: pd.DataFrame, sds: Spread, effect: float, n_sims: int = 200, seed: int = 0,
               goal: float = GOAL) -> pd.DataFrame:  # fmt: skip
    """The table `tmx plan --power` prints: `power_table`, and for factors below `goal` what would reach it."""
    table = power_table(design, sds, effect, n_sims, seed=seed)
    needs = []
    for row in table.itertuples(index=False):
        if np.isnan(row.power):
            needs.append("not testable: the design does not vary it" if not row.unit else "")
        elif row.power >= goal:
            needs.append("reached")
        else:
            grow = units_for_power(design, sds, row.factor, effect, goal, max(50, n_sims // 4), seed=seed)
            few = f"too few {row.unit.split(' ')[0]} for p < {ALPHA} at all; " if row.min_p >= ALPHA else ""
            needs.append(few + "; or ".join(grow.values()))
    return table.assign(to_reach=needs)


def power_lines(design: pd.DataFrame, sds: Spread, effect: float, n_sims: int = 200, seed: int = 0) -> list[str]:
    """What `tmx plan --power` prints: the design, the spread simulated and `plan_power`'s table."""

    def count(col: str, what: str) -> str:
        n = design[col].nunique()
        return f"{n} {what}{'s' if n != 1 else ''}"

    lines = [f"power to detect an effect of {effect:.1%} gain at p < {ALPHA} (before Holm's correction), {n_sims} "
             f"simulated studies of this design: {len(design)} transfers from {count('source', 'source')} onto "
             f"{count('target', 'target')}, {count('target_size', 'size')}, {count('seed', 'seed')}",
             f"  random effects (sd): {sds.describe()}",
             f"  {'factor':<23} {'unit':<24} {'units':>5} {'power':>6}  to reach {GOAL:.0%}"]  # fmt: skip
    for row in plan_power(design, sds, effect, n_sims, seed).itertuples(index=False):
        power = "" if np.isnan(row.power) else f"{row.power:.2f}"
        units = str(row.n_units) if row.unit else ""
        lines.append(f"  {row.factor:<23} {row.unit:<24} {units:>5} {power:>6}  {row.to_reach}")
    return lines


__all__ = ["ASSUMED", "GOAL", "MIN_PILOT", "Spread", "components_from_runs", "design_frame", "plan_power", "power",
           "power_lines", "power_table", "units_for_power"]  # fmt: skip
