"""Bench: the full analysis and report on a 10,000-run study (simulated runs, no training).

Target: analyse + write_report <= 10 s on this machine. Prints the time of
each stage and the ratio of the total to the target, measured in one run, and
within analyse the time of the factor tests (each at its level, by permutation)
and of the joint mixed model (REML, crossed random effects).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.factors import factor_tests, mixed_model  # noqa: E402
from analysis.load import read_runs, write_runs  # noqa: E402
from analysis.report import analyse, write_report  # noqa: E402
from analysis.simulate import simulate_runs  # noqa: E402

TARGET_S = 10.0


def main() -> None:
    # 3 domains x 4 datasets x 2 tasks = 24 (dataset, task) pairs; 552 transfers per (size, seed)
    runs = simulate_runs(0, domain_effect=0.05, per_domain=4, sizes=(16, 64, 256), seeds=6)
    print(f"simulated study: {len(runs)} runs ({(runs['kind'] == 'transfer').sum()} transfers)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_runs(runs, Path(tmp) / "runs.parquet")
        runs = read_runs(Path(tmp) / "runs.parquet")
        t1 = time.perf_counter()
        result = analyse(runs)
        t2 = time.perf_counter()
        paths = write_report(result, Path(tmp) / "report", "bench")
        t3 = time.perf_counter()
        size_kb = paths["html"].stat().st_size / 1024
        counted = result.gains[result.gains["included"]]
        t4 = time.perf_counter()
        factor_tests(counted)
        t5 = time.perf_counter()
        mixed_model(counted)
        t6 = time.perf_counter()
    total = t3 - t1
    print(f"parquet round trip     {t1 - t0:6.2f} s")
    print(f"analyse (gains, factors, bootstrap, model, findings) {t2 - t1:6.2f} s")
    print(f"  of which factor tests {t5 - t4:.2f} s, mixed model {t6 - t5:.2f} s (timed again, apart)")
    print(f"write_report (figures, html {size_kb:.0f} KiB, md, csv) {t3 - t2:6.2f} s")
    print(f"analysis + report: {total:.2f} s; target {TARGET_S:.0f} s; ratio total/target = {total / TARGET_S:.2f} "
          f"({'meets' if total <= TARGET_S else 'misses'} the target)")


if __name__ == "__main__":
    main()
