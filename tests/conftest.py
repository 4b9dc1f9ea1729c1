"""Test session setup: no state in the real home directory, telemetry off, short Ray temp paths.

HOME, Ray's temp dir, MLflow and matplotlib all point into one temporary
folder for the whole session, before any of them is imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="tmx-"))  # short: Ray's socket paths must stay < 108 chars
for name, sub in {"HOME": "home", "RAY_TMPDIR": "ray", "MPLCONFIGDIR": "mpl", "TORCH_HOME": "torch"}.items():
    (_ROOT / sub).mkdir()
    os.environ[name] = str(_ROOT / sub)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

REPO = Path(__file__).resolve().parents[1]
TMX = str(Path(sys.executable).with_name("tmx"))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_ROOT, ignore_errors=True)


def run_tmx(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `tmx` console script as a user would."""
    return subprocess.run([TMX, *args], cwd=cwd, env=os.environ | (env or {}), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture
def write_study(tmp_path):
    """Write a study YAML into tmp_path and return its path."""

    def write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
