"""A study's MLflow runs as one tidy DataFrame: one row per job run (the study's parent run and lease runs excluded).

Columns: the job tags (`TAGS`), `status` (FINISHED, FAILED, ...), `error`,
`name`, `value` (the run's primary metric) and one `metric.<name>` column per
logged metric. `load_runs` pages through the tracking store; `read_runs`
reads a parquet export (`tmx export`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TAGS = ("study", "kind", "job_key", "source_dataset", "source_domain", "source_task", "source_size", "source_domains",
        "source_datasets", "multi_source", "target_dataset", "target_domain", "target_task", "target_size", "seed", "init",
        "primary_metric", "higher_is_better")  # fmt: skip


# the study's parent run and its drivers' lease runs (matrix/lease.py) are no job runs
JOB_RUNS = "tags.kind != 'study' and tags.kind != 'lease'"


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """Records of {tag: value, ..., "metrics": {name: float}, "status": str} -> the tidy frame (pure)."""
    rows = []
    for rec in records:
        metrics = rec.get("metrics", {})
        row = {t: rec.get(t) for t in TAGS}
        row |= {"status": rec.get("status", "FINISHED"), "error": rec.get("error"), "name": rec.get("mlflow.runName")}
        row["value"] = metrics.get(rec.get("primary_metric") or "", float("nan"))
        row.update({f"metric.{k}": v for k, v in metrics.items()})
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else [*TAGS, "status", "error", "name", "value"])
    df["target_size"] = pd.to_numeric(df["target_size"], errors="coerce").astype("Int64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["higher_is_better"] = df["higher_is_better"] == "true"
    df["value"] = df["value"].astype(float)
    return df


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "FINISHED"]


def load_runs(tracking_uri: str, study: str) -> pd.DataFrame:
    """Every job run of `study`'s experiment, paged through the store, 1,000 runs a page."""
    from mlflow import MlflowClient

    from matrix.tracking import all_runs

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} in {tracking_uri}: run the study first (tmx run)")
    return runs_frame([run.data.tags | {"metrics": dict(run.data.metrics), "status": run.info.status}
                       for run in all_runs(client, exp.experiment_id, JOB_RUNS)])  # fmt: skip


def write_runs(runs: pd.DataFrame, path: str | Path) -> Path:
    """Export the tidy frame to parquet (what `tmx export` writes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.to_parquet(path, index=False)
    return path


def read_runs(path: str | Path) -> pd.DataFrame:
    """The tidy frame back from a parquet export."""
    return pd.read_parquet(path)
