"""cluster/: the `ray up` configs, the KubeRay RayJob and the image agree with the code and with pyproject.toml.

The `ray up` configs go through Ray's own config preparation and schema (what `ray up` does before it calls
the cloud), and their `ray start` lines through Ray's own CLI parser; the entrypoints through ours."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from matrix.cli import main
from matrix.submit import CLUSTER_ADDRESS, DASHBOARD_PORT, ENTRYPOINT, ENV_AUTH_MODE, ENV_STORAGE, JOB_ENV, job_request

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PINS = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", d).groups()
            for d in PYPROJECT["project"]["dependencies"])  # name -> exact version
PY = "py" + re.search(r"3\.(\d+)", PYPROJECT["project"]["requires-python"]).group(0).replace(".", "")
RAY_IMAGE = f"rayproject/ray:{PINS['ray']}-{PY}-gpu"
BACKENDS = {"aws": "s3fs", "gcp": "gcsfs"}  # the fsspec backend of each cloud's object store
JOB_CPUS = 1  # matrix/scheduler.py: every study job is a Ray task asking for one CPU and no GPU
# importing Ray's CLI imports Ray Serve, whose pydantic models warn on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _run_params(argv: list[str]) -> dict:
    """Parse `tmx run ...` arguments with our click CLI, as the job's shell would run them."""
    assert argv[: len(ENTRYPOINT)] == list(ENTRYPOINT), argv
    command = main.commands["run"]
    return command.make_context("run", argv[len(ENTRYPOINT) :]).params  # unknown options raise


def _ray_start(command: str) -> dict:
    """The options of the `ray start` in a shell command line, parsed by Ray's own CLI; plus the exported env."""
    from ray.scripts.scripts import start

    env, params = {}, None
    for part in command.split(";"):
        argv = shlex.split(part)
        if argv[:1] == ["export"]:
            env.update(a.split("=", 1) for a in argv[1:])
        elif argv[:2] == ["ray", "start"]:
            params = start.make_context("start", argv[2:]).params
    assert params is not None, f"no `ray start` in {command!r}"
    return params | {"env": env}


def _pip_installs(commands: list[str]) -> list[str]:
    """Every requirement the commands `pip install`."""
    out = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            argv = shlex.split(part)
            if argv[:2] == ["pip", "install"]:
                out += [a for a in argv[2:] if not a.startswith("-")]
    return out


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_ray_up_config(cloud):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(f"{cloud}.yaml")
    validate_config(prepare_config(config))  # Ray's schema, after Ray fills in its defaults
    assert config["cluster_name"] and config["provider"]["type"] == cloud
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types and types[head]["resources"].get("CPU") == 0  # the driver's node runs no study job
    workers = {name: t for name, t in types.items() if name != head}
    assert workers
    for name, node in workers.items():
        gpus = node["resources"].get("GPU", 0)
        assert gpus >= 1 and node["resources"]["CPU"] == gpus * JOB_CPUS, name  # one job per GPU
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"], name
        if cloud == "aws":
            assert re.match(r"(g\d|p\d)", node["node_config"]["InstanceType"]), name  # a GPU instance family
        else:
            (accel,) = node["node_config"]["guestAccelerators"]
            assert accel["acceleratorType"].startswith("nvidia-") and accel["acceleratorCount"] == gpus, name
            assert node["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE", name
    assert config["docker"]["image"] == RAY_IMAGE and "--gpus all" in config["docker"]["run_options"]

    # the pinned torch/torchvision, this package (the repository, mounted on every node), the storage backend
    installs = _pip_installs(config["setup_commands"])
    assert f"torch=={PINS['torch']}" in installs and f"torchvision=={PINS['torchvision']}" in installs
    package = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert package in installs
    assert f"{BACKENDS[cloud]}=={PINS['fsspec']}" in installs
    assert {".git", ".venv", "outputs"} <= set(config["rsync_exclude"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # token auth on every node

    head_start = _ray_start(config["head_start_ray_commands"][-1])
    assert head_start["head"] and head_start["dashboard_port"] == DASHBOARD_PORT  # where `tmx submit` goes
    assert head_start["dashboard_host"] == "0.0.0.0" and head_start["autoscaling_config"]
    assert head_start["env"] == {ENV_AUTH_MODE: "token"}
    worker_start = _ray_start(config["worker_start_ray_commands"][-1])
    assert worker_start["address"] == f"$RAY_HEAD_IP:{head_start['port']}" and not worker_start["head"]
    assert worker_start["env"] == {ENV_AUTH_MODE: "token"}


def test_kuberay_rayjob():
    job = _load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    params = _run_params(shlex.split(spec["entrypoint"]))
    assert params["address"] == "auto" and not params["in_process"]

    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert set(JOB_ENV) <= set(env) and all(isinstance(v, str) for v in env.values())
    assert re.match(r"(s3|gs)://", env[ENV_STORAGE]) and env["MLFLOW_TRACKING_URI"].startswith("http")

    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == PINS["ray"] and cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert {"containerPort": DASHBOARD_PORT, "name": "dashboard"} in head_container["ports"]
    # the study file the entrypoint names is in the ConfigMap mounted on the head
    mounts = {m["name"]: m["mountPath"] for m in head_container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    (study_volume,) = [n for n, path in mounts.items() if Path(params["study_file"]).parent == Path(path)]
    assert volumes[study_volume]["configMap"]["name"]

    assert cluster["workerGroupSpecs"]
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus >= 1 and container["resources"]["requests"]["nvidia.com/gpu"] == gpus, group["groupName"]
        assert int(group["rayStartParams"]["num-cpus"]) == gpus * JOB_CPUS, group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        assert container["image"] == head_container["image"], group["groupName"]


def test_image_installs_the_pins_and_the_package():
    lines = [line.strip() for line in (CLUSTER / "Dockerfile").read_text().splitlines()]
    assert f"FROM {RAY_IMAGE}" in lines
    installs = _pip_installs([line.removeprefix("RUN ") for line in lines if line.startswith("RUN ")])
    assert f"torch=={PINS['torch']}" in installs and f"torchvision=={PINS['torchvision']}" in installs
    assert {f"s3fs=={PINS['fsspec']}", f"gcsfs=={PINS['fsspec']}"} <= set(installs)
    copied = {Path(shlex.split(line)[-2]).name for line in lines if line.startswith("COPY")}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied and {"pyproject.toml", "README.md"} <= {
        w for line in lines if line.startswith("COPY") for w in shlex.split(line)}  # fmt: skip
    assert "/home/ray/transfer-matrix" in installs


def test_submitted_entrypoint_is_a_tmx_run_on_the_cluster(tmp_path):
    """What `tmx submit` sends parses with `tmx run`; its env holds what the RayJob's does; no cluster needed."""
    (tmp_path / "my study.yaml").write_text("name: s\ndatasets: [{name: a, domain: driving}, {name: b, domain: aerial}]\n")
    request = job_request(tmp_path / "my study.yaml", "http://mlflow:5000", "s3://bucket/ckpt")
    params = _run_params(shlex.split(request.entrypoint))
    assert params["study_file"] == "my study.yaml" and params["address"] == CLUSTER_ADDRESS[1]
    assert request.runtime_env["working_dir"] == str(tmp_path) and set(request.env_vars) == set(JOB_ENV)
    assert {".git/", ".venv/", "outputs/"} <= set(request.runtime_env["excludes"])
    assert params["budget"] is None
    budgeted = job_request(tmp_path / "my study.yaml", "http://mlflow:5000", None, budget=0.25)  # tmx submit --budget
    assert _run_params(shlex.split(budgeted.entrypoint))["budget"] == 0.25
    # the submit command exists and documents its options
    help_text = CliRunner().invoke(main, ["submit", "--help"]).output
    assert all(opt in help_text for opt in ("--address", "--tracking-uri", "--storage", "--wait / --no-wait"))
