"""Test session setup: no state in the real home directory, telemetry off, short Ray temp paths.

HOME, Ray's temp dir, MLflow and matplotlib all point into one temporary
folder for the whole session, before any of them is imported.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="tmx-"))  # short: Ray's socket paths must stay < 108 chars
for name, sub in {"HOME": "home", "RAY_TMPDIR": "ray", "MPLCONFIGDIR": "mpl", "TORCH_HOME": "torch"}.items():
    (_ROOT / sub).mkdir()
    os.environ[name] = str(_ROOT / sub)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# one math thread per process: `make test` runs two xdist workers on two cores, each with its own tmx runs and Ray
# workers (which Ray gives one thread); two threads each would only wait on each other
os.environ.setdefault("OMP_NUM_THREADS", "1")
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


HEAVY = ("torch", "timm", "ray", "mlflow")
_MODULES = ("import atexit, sys\n"
            "atexit.register(lambda: print('\\nloaded:', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr))\n"
            "from matrix.cli import main\n"
            "main(sys.argv[1:], prog_name='tmx')\n")  # fmt: skip


def tmx_modules(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set]:
    """Run `tmx ARGS` as `run_tmx` does; also return which of HEAVY the command had imported when it exited."""
    result = subprocess.run([sys.executable, "-c", _MODULES.format(heavy=HEAVY), *args], cwd=cwd,
                            env=os.environ | (env or {}), capture_output=True, text=True, timeout=600)  # fmt: skip
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("loaded:"), result.stderr[-3000:]
    return result, set(last.split()[1:])


def plan_loads(study_file: Path) -> tuple[int, set]:
    """Read and plan `study_file` in a fresh interpreter: how many jobs, and which of HEAVY it loaded."""
    code = ("import sys; from matrix.spec import load_study; from matrix.plan import plan; "
            f"jobs = plan(load_study({str(study_file)!r})); print(len(jobs), *[m for m in {HEAVY!r} if m in sys.modules])")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count, *loaded = result.stdout.split()
    return int(count), set(loaded)


@pytest.fixture
def write_study(tmp_path):
    """Write a study YAML into tmp_path and return its path."""

    def write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# studies small enough for seconds of CPU. FOUR_JOBS: a source, its transfer onto a target, the target's baseline
# and its reference (trivial predictor). EIGHT_JOBS: both datasets are sources and targets: a source, a baseline,
# a reference and a transfer per dataset.
FOUR_JOBS = """\
name: {name}
image_size: 32
init: scratch
scratch: false
tasks: [segmentation]
datasets:
  - {{name: a, domain: driving, role: source, train: 16, val: 8}}
  - {{name: b, domain: underwater, role: target, train: 16, val: 8}}
target_sizes: [8]
source: {{steps: 3, batch_size: 8}}
finetune: {{steps: 2, batch_size: 8}}
"""
EIGHT_JOBS = """\
name: {name}
image_size: 32
init: scratch
tasks: [segmentation]
datasets:
  - {{name: a, domain: driving, train: 16, val: 8}}
  - {{name: b, domain: underwater, train: 16, val: 8}}
target_sizes: [8]
source: {{steps: {steps}, batch_size: 8}}
finetune: {{steps: {steps}, batch_size: 8}}
"""

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_CHROMIUM = "needs Debian's chromium and chromium-driver (.ci/run installs them: apt-get install chromium chromium-driver)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def headless_chromium(profile: Path, size: str = "1400,1000"):
    """Debian's chromium through its chromedriver (selenium), headless, with its profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--window-size={size}"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a fresh store; its URI."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(TMX).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not come up"
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # its own process group: the server and its workers
        server.wait(timeout=30)
