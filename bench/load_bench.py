"""Bench: loading a study of 10,000 runs from MLflow's sqlite store (paged search) and from parquet.

Builds the store once (simulated runs logged through MlflowClient, as the
tracker logs them: tags, metrics, FINISHED) under bench/.cache/, then times
`analysis.load.load_runs` against reading the same table from a parquet
export, side by side. Target: the MLflow load in seconds (<= 30 s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, RunTag  # noqa: E402

from analysis.load import load_runs, read_runs, write_runs  # noqa: E402
from analysis.simulate import simulate_runs  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
TARGET_S = 30.0


def build_store(uri: str, n_min: int) -> int:
    runs = simulate_runs(0, per_domain=4, sizes=(16, 64, 256), seeds=6)
    runs = runs.head(max(n_min, 1))
    client = MlflowClient(uri)
    if client.get_experiment_by_name("bench") is not None:
        return len(runs)
    exp = client.create_experiment("bench")
    tag_cols = [c for c in runs.columns if not c.startswith("metric.") and c not in ("value", "status", "error", "name")]
    t0 = time.perf_counter()
    for i, row in enumerate(runs.itertuples(index=False)):
        rec = row._asdict()
        tags = {c: str(rec[c]).lower() if isinstance(rec[c], bool) else str(rec[c]) for c in tag_cols}
        run = client.create_run(exp, tags=tags)
        metrics = [Metric(c.removeprefix("metric."), float(v), 0, 0) for c, v in rec.items()
                   if c.startswith("metric.") and v == v]  # fmt: skip
        client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag("mlflow.runName", f"run {i}")])
        client.set_terminated(run.info.run_id, "FINISHED")
        if i % 2000 == 0:
            print(f"  logged {i} runs ({time.perf_counter() - t0:.0f} s)", flush=True)
    return len(runs)


def main() -> None:
    CACHE.mkdir(exist_ok=True)
    uri = f"sqlite:///{CACHE / 'bench.db'}"
    n = build_store(uri, 10_000)
    t0 = time.perf_counter()
    runs = load_runs(uri, "bench")
    t1 = time.perf_counter()
    write_runs(runs, CACHE / "runs.parquet")
    t2 = time.perf_counter()
    again = read_runs(CACHE / "runs.parquet")
    t3 = time.perf_counter()
    assert len(runs) == len(again) == n, (len(runs), n)
    print(f"load_runs from sqlite (paged, 1,000 a page): {len(runs)} runs in {t1 - t0:.2f} s "
          f"({(t1 - t0) / len(runs) * 1000:.2f} ms/run)")
    print(f"read_runs from parquet:                     {len(again)} runs in {t3 - t2:.2f} s")
    print(f"ratio sqlite/parquet = {(t1 - t0) / max(t3 - t2, 1e-9):.0f}x; sqlite load vs target {TARGET_S:.0f} s: "
          f"ratio {(t1 - t0) / TARGET_S:.2f} ({'meets' if t1 - t0 <= TARGET_S else 'misses'} the target)")


if __name__ == "__main__":
    main()
