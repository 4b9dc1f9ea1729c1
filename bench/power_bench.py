"""Bench: calibration and power of the factor tests on simulated studies with a study's structure.

The studies are issue 18's: 6 datasets over 3 domains, 2 seeds, target sizes 16 and 64, sources of 400 and 32
images, two of the datasets' sources multi-source; every source has its own quality (sd 5% gain), every baseline
its own noise (sd 3%) shared by its transfers, and each transfer 2% noise of its own. Prints, measured in one run:

- the false-positive rate at 5% of each factor's test over NULL_STUDIES null studies, beside the rate of the
  transfer-level tests it replaces (Mann-Whitney U over transfers, Wilcoxon paired by target block), and their
  ratio to the nominal 5%;
- the power (share of studies with p < 0.05) on an effect of 2, 5 and 10% gain planted on each factor in turn,
  over POWER_STUDIES studies each;
- the time per simulated study of the tests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from analysis.factors import factor_table  # noqa: E402
from analysis.simulate import simulate_gains  # noqa: E402

NULL = {"seeds": 2, "source_sd": 0.05, "baseline_sd": 0.03, "multi_source": ("dri1", "und1")}
NULL_STUDIES = 1000
POWER_STUDIES = 200
EFFECTS = (0.02, 0.05, 0.10)
PLANT = {"same_domain": "domain_effect", "same_task": "task_effect", "source_larger": "size_effect",
         "small_target": "small_effect", "multi_source": "multi_effect"}  # fmt: skip
TESTED = ("same_domain", "same_task", "includes_target_domain", "source_larger", "small_target", "multi_source")


def _naive(g: pd.DataFrame, factor: str) -> tuple[float, float]:
    """The old transfer-level tests: Mann-Whitney U over transfers, Wilcoxon paired by target block."""
    col = g[factor]
    a, b = g.loc[col == True, "gain"], g.loc[col == False, "gain"]  # noqa: E712
    mwu = stats.mannwhitneyu(a, b).pvalue
    by = ["source", "target", "seed", "init"] if factor == "small_target" else ["target", "target_size", "seed", "init"]
    paired = g[col.notna()].groupby([*by, factor])["gain"].mean().unstack(factor).dropna()
    diff = (paired[True] - paired[False]).to_numpy() if {True, False} <= set(paired.columns) else np.array([])
    wil = stats.wilcoxon(diff).pvalue if len(diff) > 1 and np.any(diff != 0) else np.nan
    return mwu, wil


def main() -> None:
    t0 = time.perf_counter()
    rows = []
    for seed in range(NULL_STUDIES):
        g = simulate_gains(100_000 + seed, **NULL)
        p = factor_table(g, n_perm=500, seed=seed).set_index("factor")["p"]
        for f in TESTED:
            mwu, wil = _naive(g, f)
            rows.append({"factor": f, "p": p[f], "mwu": mwu, "wilcoxon": wil})
    per_study = (time.perf_counter() - t0) / NULL_STUDIES
    null = pd.DataFrame(rows).groupby("factor")[["p", "mwu", "wilcoxon"]].agg(lambda s: (s < 0.05).mean())
    sd = np.sqrt(0.05 * 0.95 / NULL_STUDIES)
    print(f"false-positive rate at 5% over {NULL_STUDIES} null studies (one sd of a calibrated rate: {sd:.1%})")
    print(f"  {'factor':<24} {'by its units':>12} {'Mann-Whitney':>13} {'Wilcoxon':>9}   ratio to 5%: units / MWU")
    for f in TESTED:
        r = null.loc[f]
        print(f"  {f:<24} {r['p']:>12.1%} {r['mwu']:>13.1%} {r['wilcoxon']:>9.1%}   {r['p'] / 0.05:.2f} / "
              f"{r['mwu'] / 0.05:.2f}")  # fmt: skip

    t1 = time.perf_counter()
    print(f"\npower (p < 0.05) over {POWER_STUDIES} studies per cell, effect planted on one factor at a time")
    print(f"  {'factor':<24} {'unit':<24}" + "".join(f"{e:>8.0%}" for e in EFFECTS))
    for factor, knob in PLANT.items():
        powers, unit = [], ""
        for e in EFFECTS:
            hits = 0
            for seed in range(POWER_STUDIES):
                row = factor_table(simulate_gains(200_000 + seed, **(NULL | {knob: e})), n_perm=500,
                                   seed=seed).set_index("factor").loc[factor]  # fmt: skip
                hits += row["p"] < 0.05
                unit = f"{row['unit']} ({row['n_units']})"
            powers.append(hits / POWER_STUDIES)
        print(f"  {factor:<24} {unit:<24}" + "".join(f"{p:>8.0%}" for p in powers))
    print(f"\ntests: {per_study * 1000:.0f} ms per simulated study (7 factors, 500 permutations, simulation "
          f"included); power table {time.perf_counter() - t1:.0f} s")


if __name__ == "__main__":
    main()
