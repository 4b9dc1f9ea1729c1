"""`tmx ui`: the MLflow UI on a study's runs, served until the CLI is stopped, then stopped with it.

    url = runs_url(f"http://127.0.0.1:{port}", experiment_id)   # the study's runs table
    status = serve_ui(tracking_uri, port, url, echo)              # blocks; 128 + signal when stopped by one

The server (`mlflow ui` and the workers it forks) runs in a process group of its own and is stopped whole when
`tmx ui` returns, fails, or receives SIGINT (Ctrl-C), SIGTERM or SIGHUP (matrix/processes.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

from matrix.processes import STOPPING, signals_caught, start_group, stop_group

HOST = "127.0.0.1"


class ServerExited(RuntimeError):
    """The server stopped by itself (a bad store URI, a port taken meanwhile, ...)."""


# MLflow 3.17's UI reads these from the runs page's URL: the model-training side of its GenAI / Model training
# switch, and the runs sorted by name, which lists every run flat (it nests child runs, collapsed under their parent,
# only when sorted by start time or unsorted; whether a parent is expanded cannot be set from the URL)
RUNS_PAGE = "workflowType=machine_learning&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"


def runs_url(base: str, experiment_id: str) -> str:
    """The runs page of an experiment in MLflow 3.17's UI (a hash route: `#/experiments/:experimentId/runs`),
    with the job runs listed by name."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{RUNS_PAGE}"


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something listens on host:port (connections of a stopped server, in TIME_WAIT, do not count: the
    server binds with SO_REUSEADDR as this check does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def serve_ui(tracking_uri: str, port: int, url: str, echo: Callable[[str], None]) -> int:
    """Serve the MLflow UI on HOST:`port` for `tracking_uri`; once it answers, echo `url`; return when the server
    exits or a stopping signal arrives, having stopped the server and all its processes.

    Returns the exit status when stopped by a signal: 128 + its number (130 for Ctrl-C). Raises ServerExited
    when the server exits by itself (its own output, on this process's stderr, says why)."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", HOST,
           "--port", str(port), "--workers", "1"]  # fmt: skip
    # no GenAI job runner (7 huey consumer processes): a study's UI has no use for it
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"}
    health = f"http://{HOST}:{port}/health"
    with signals_caught(*STOPPING) as caught:  # from here on a signal only asks the loops below to stop
        proc = start_group(cmd, env=env, stdin=subprocess.DEVNULL)
        try:
            while not caught and proc.poll() is None and not _answers(health):
                time.sleep(0.25)
            if not caught and proc.poll() is None:
                echo(url)
            while not caught and proc.poll() is None:
                time.sleep(0.2)
        finally:
            stop_group(proc)
    if caught:
        return 128 + caught[0]
    raise ServerExited(f"the MLflow server exited with status {proc.returncode} (its output above says why)")
