"""A study's MLflow runs as one tidy DataFrame: one row per FINISHED job run.

Columns: the job tags (study, kind, job_key, source_*, target_*, target_size,
seed, init, primary_metric, higher_is_better), `value` (the run's primary
metric), and one `metric.<name>` column per logged metric.
"""

from __future__ import annotations

import os

import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

TAGS = ("study", "kind", "job_key", "source_dataset", "source_domain", "source_task", "target_dataset",
        "target_domain", "target_task", "target_size", "seed", "init", "primary_metric", "higher_is_better")  # fmt: skip


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """Records of {tag: value, ..., "metrics": {name: float}} -> the tidy frame (pure; `load_runs` feeds it)."""
    rows = []
    for rec in records:
        metrics = rec.get("metrics", {})
        row = {t: rec.get(t) for t in TAGS}
        row["value"] = metrics.get(rec.get("primary_metric") or "", float("nan"))
        row.update({f"metric.{k}": v for k, v in metrics.items()})
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else [*TAGS, "value"])
    df["target_size"] = pd.to_numeric(df["target_size"], errors="coerce").astype("Int64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["higher_is_better"] = df["higher_is_better"] == "true"
    df["value"] = df["value"].astype(float)
    return df


def load_runs(tracking_uri: str, study: str) -> pd.DataFrame:
    """Every FINISHED run of `study`'s experiment, paged through the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} in {tracking_uri}: run the study first (tmx run)")
    records, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1000,
                                  page_token=token)  # fmt: skip
        records += [run.data.tags | {"metrics": dict(run.data.metrics)} for run in page]
        token = page.token
        if not token:
            return runs_frame(records)
