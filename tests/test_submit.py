"""`tmx submit` against a real one-node Ray cluster (`ray start --head` on 127.0.0.1 with token auth and the Jobs
API), started and stopped here. The head's Python is this virtualenv: the package is installed on the
"cluster", as cluster/README.md asks of every node. The job writes its runs to a sqlite file given by an
absolute path, which the test reads (the head is this machine); tests/test_study.py covers an MLflow server."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FOUR_JOBS, REPO, free_port, run_tmx
from mlflow import MlflowClient
from ray.job_submission import JobSubmissionClient

from matrix.cli import main
from matrix.submit import follow

BIN = Path(sys.executable).parent
STUDY = FOUR_JOBS.format(name="tiny")  # its transfer goes through the checkpoint storage


def _wait_for(url: str, proc: subprocess.Popen, what: str, headers: dict, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).read()
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited: {proc.stdout.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, f"{what} did not come up"
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the leader (`ray start --block` then stops its own processes), then end what is left of its group."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # only this process group: the processes started here
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster with the Jobs API and token auth, on loopback."""
    tmp = tmp_path_factory.mktemp("cluster")
    token = secrets.token_hex(32)
    head_env = os.environ | {
        "RAY_AUTH_TOKEN": token,  # with a token present, `ray start --head` turns token auth on
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `tmx` on the nodes' PATH
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # stop at once on SIGTERM
    }
    dashboard = free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port=0", "--node-ip-address", "127.0.0.1",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
         "--num-cpus", "2", "--ray-client-server-port", str(free_port()),
         "--dashboard-agent-listen-port", str(free_port())],
        env=head_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        address, tracking = f"http://127.0.0.1:{dashboard}", f"sqlite:///{tmp / 'mlflow.db'}"
        _wait_for(f"{address}/api/jobs/", head, "the Ray head's Jobs API", {"Authorization": f"Bearer {token}"})
        yield {"address": address, "tracking": tracking, "token": token, "tmp": tmp}
    finally:
        _stop(head)


def _study_folder(root: Path, text: str) -> Path:
    """A study's folder as a user has it: with outputs, a virtualenv and git data that must not be uploaded."""
    root.mkdir()
    (root / "tiny.yaml").write_text(text)
    for junk in ("outputs/tiny/old.bin", ".venv/lib/big.bin", ".git/objects/pack.bin"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"\0" * 1024)
    return root


def test_bad_input_exits_2_and_contacts_nothing(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))  # stands where the cluster would be; must see no connection
    listener.setblocking(False)
    address = f"http://127.0.0.1:{listener.getsockname()[1]}"
    good = _study_folder(tmp_path / "ok", STUDY) / "tiny.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(STUDY.replace("image_size: 32", "image_size: big"))
    shutil.copy(REPO / "configs" / "catalog.yaml", tmp_path / "catalog.yaml")
    outside = _study_folder(tmp_path / "sub", STUDY + "catalog: ../catalog.yaml\n") / "tiny.yaml"
    cases = {
        (str(bad), "--tracking-uri", "http://mlflow:5000"): [str(bad), "image_size"],
        (str(good),): ["--tracking-uri", "MLFLOW_TRACKING_URI"],
        (str(good), "--tracking-uri", "sqlite:///runs/mlflow.db"): ["--tracking-uri", "relative"],
        (str(good), "--tracking-uri", "http://mlflow:5000", "--storage", "ckpt"): ["--storage", "relative"],
        (str(good), "--tracking-uri", "http://mlflow:5000", "--address", "ray://head:10001"): ["--address", "http://"],
        (str(tmp_path / "missing.yaml"), "--tracking-uri", "http://mlflow:5000"): ["missing.yaml"],
        (str(outside), "--tracking-uri", "http://mlflow:5000"): [str(outside), "catalog", "outside"],
    }
    for args, words in cases.items():
        if "--address" not in args:
            args = (*args, "--address", address)
        result = CliRunner().invoke(main, ["submit", *args], env={"MLFLOW_TRACKING_URI": None})
        assert result.exit_code == 2, (args, result.output)
        line = result.stderr.strip()
        assert "\n" not in line and line.startswith("tmx: ") and all(w in line for w in words), (args, line)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing was contacted
    listener.close()

    # a cluster that does not answer: exit 1, one line naming the address
    result = CliRunner().invoke(main, ["submit", str(good), "--tracking-uri", "http://mlflow:5000", "--address", address])
    assert result.exit_code == 1 and f"cannot use the Ray Jobs API at {address}" in result.stderr, result.output
    assert "\n" not in result.stderr.strip()


def test_submit_runs_the_study_as_a_ray_job(cluster, tmp_path, monkeypatch):
    folder = _study_folder(tmp_path / "study", STUDY)
    # without the cluster's token: refused, one line saying where the token goes
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    refused = CliRunner().invoke(main, ["submit", str(folder / "tiny.yaml"), "--address", cluster["address"],
                                        "--tracking-uri", cluster["tracking"]])  # fmt: skip
    assert refused.exit_code == 1 and "RAY_AUTH_TOKEN" in refused.stderr, refused.output
    assert "\n" not in refused.stderr.strip()

    storage = tmp_path / "shared-checkpoints"  # a folder every node mounts: here, one node
    env = {"RAY_AUTH_TOKEN": cluster["token"]}
    result = run_tmx("submit", "tiny.yaml", "--address", cluster["address"], "--tracking-uri", cluster["tracking"],
                     "--storage", str(storage), "--wait", cwd=folder, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-3000:])
    job_id = result.stdout.split()[1].rstrip(":")
    assert job_id.startswith("tmx-tiny-")
    assert f"ray job logs --address {cluster['address']} --follow {job_id}" in result.stdout
    assert "Ran 4 jobs (0 were already done)" in result.stdout  # the job's own log, streamed
    assert result.stdout.rstrip().endswith(f"job {job_id}: SUCCEEDED")

    client = JobSubmissionClient(cluster["address"], headers={"Authorization": f"Bearer {cluster['token']}"})
    info = client.get_job_info(job_id)
    assert str(info.status) == "SUCCEEDED" and info.entrypoint == "tmx run tiny.yaml --address auto"
    assert info.metadata["study"] == "tiny"

    mlflow = MlflowClient(cluster["tracking"])
    exp = mlflow.get_experiment_by_name("tiny")
    runs = mlflow.search_runs([exp.experiment_id], "tags.kind != 'study'", max_results=100)
    assert sorted(r.data.tags["kind"] for r in runs) == ["baseline", "reference", "source", "transfer"]
    assert all(r.info.status == "FINISHED" for r in runs)
    source = next(r for r in runs if r.data.tags["kind"] == "source")
    checkpoint = Path(source.data.tags["checkpoint"])
    assert checkpoint.is_relative_to(storage) and checkpoint.is_file()

    # what was uploaded: the study, not its outputs, virtualenv or git data
    uploaded = [p.parent for p in Path(os.environ["RAY_TMPDIR"]).rglob("runtime_resources/working_dir_files/*/tiny.yaml")]
    assert uploaded, "the job's working_dir was not found on the head"
    for root in uploaded:
        assert not (root / ".venv").exists() and not (root / ".git").exists()
        assert not (root / "outputs" / "tiny" / "old.bin").exists()

    # a study the cluster cannot run (no imagenet weights on its nodes): --no-wait returns at once; the job fails
    imagenet = _study_folder(tmp_path / "imagenet", STUDY.replace("init: scratch", "init: imagenet"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster["token"])
    result = CliRunner().invoke(main, ["submit", str(imagenet / "tiny.yaml"), "--address", cluster["address"],
                                       "--tracking-uri", cluster["tracking"]])  # in-process: one import less  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = result.stdout.split()[1].rstrip(":")
    logs: list[str] = []
    assert follow(client, job_id, logs.append) == 1
    assert "are not in the local cache and are never downloaded" in "".join(logs) and logs[-1].startswith(f"job {job_id}: FAILED")
