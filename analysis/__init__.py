"""Runs -> gains -> report. Pure DataFrame functions; MLflow and files only at the edges (load, report)."""
