"""The CLI is light: importing it, and the commands that need no model, load no torch, timm, Ray or MLflow
(tests/test_study.py checks `plan`, `run` and `status` on a finished study, which read runs through MLflow)."""

from __future__ import annotations

import subprocess
import sys

from conftest import HEAVY, REPO, tmx_modules


def test_importing_the_cli_loads_no_heavy_module():
    code = f"import sys, matrix.cli; print(*[m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", out.stdout


def test_plan_of_a_new_study_loads_no_heavy_module(tmp_path):
    """`tmx plan` of the demo (procedural data, no runs yet) and of a study with a bad field (exit 2)."""
    result, loaded = tmx_modules("plan", str(REPO / "configs" / "demo.yaml"), "--jobs", cwd=tmp_path)
    assert result.returncode == 0 and "transfer" in result.stdout, result.stderr[-2000:]
    assert loaded == set(), loaded
    (tmp_path / "bad.yaml").write_text("name: bad\nimage_size: big\ndatasets: []\n")
    result, loaded = tmx_modules("plan", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "bad.yaml: image_size" in result.stderr and loaded == set()
