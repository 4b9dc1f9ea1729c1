"""`tmx submit`: run a study on a remote Ray cluster as a Ray Job, through the Jobs API.

    request = job_request("configs/demo.yaml", tracking_uri="http://mlflow:5000", storage="s3://bucket/ckpt")
    client = connect("http://HEAD:8265")                  # checks the address answers; sends the auth token
    job_id = client.submit_job(**request.submit_kwargs())
    status = follow(client, job_id, echo)                 # streams the logs; 0 if the job SUCCEEDED, else 1

The job runs `tmx run STUDY --address auto` on the head node, in a copy of the
study's folder (uploaded as the job's `working_dir`, without outputs, virtual
environments or git data). The package itself is not uploaded: every node has
it installed (cluster/README.md). The job's environment carries the tracking
URI and the checkpoint storage root (`JOB_ENV`), so the driver logs to the
shared MLflow server and the workers write checkpoints every node can read.

This module and cluster/*.yaml share the names below; tests/test_cluster.py
checks the configs against them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"  # read by `tmx run --tracking-uri`
ENV_STORAGE = "TMX_STORAGE"  # read by `tmx run --storage`
ENV_TELEMETRY = "MLFLOW_DISABLE_TELEMETRY"
ENV_AUTH_TOKEN = "RAY_AUTH_TOKEN"  # Ray >= 2.52 token auth: the cluster's token, or
ENV_AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"  # a file holding it (default ~/.ray/auth_token)
ENV_AUTH_MODE = "RAY_AUTH_MODE"  # "token" on every node of a cluster with token auth
JOB_ENV = (ENV_TRACKING_URI, ENV_STORAGE, ENV_TELEMETRY)  # runtime_env env_vars of every submitted job

ENTRYPOINT = ("tmx", "run")  # + STUDY + CLUSTER_ADDRESS
CLUSTER_ADDRESS = ("--address", "auto")  # the job's driver joins the cluster it runs on
DASHBOARD_PORT = 8265  # the head's Jobs API (`ray start --dashboard-port`)
PINNED = ("torch", "torchvision")  # installed on every node at pyproject.toml's exact versions
EXCLUDES = (".git/", ".venv/", "venv/", "outputs/", "mlruns/", "mlartifacts/", "mlflow.db", "__pycache__/",
            ".pytest_cache/", "*.egg-info/")  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(ValueError):
    """One line saying what is wrong and how to fix it; `status` is the exit status (2: bad input)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobRequest:
    """What `tmx submit` sends: the entrypoint, its runtime_env and the job's id."""

    submission_id: str
    entrypoint: str
    working_dir: Path
    env_vars: dict[str, str]
    excludes: tuple[str, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def runtime_env(self) -> dict:
        return {"working_dir": str(self.working_dir), "excludes": list(self.excludes), "env_vars": dict(self.env_vars)}

    def submit_kwargs(self) -> dict:
        return {"entrypoint": self.entrypoint, "submission_id": self.submission_id, "runtime_env": self.runtime_env,
                "metadata": self.metadata}  # fmt: skip


def check_address(address: str) -> str:
    """The Jobs API address without a trailing slash; anything but http(s)://HOST:PORT is an error."""
    if not re.fullmatch(r"https?://[^/\s:]+(:\d+)?/?", address):
        raise SubmitError(f"--address: expected the Ray dashboard's Jobs API, http://HEAD:{DASHBOARD_PORT}, "
                          f"got {address!r}")  # fmt: skip
    return address.rstrip("/")


def _local_path(uri: str) -> str | None:
    """The filesystem path a tracking or storage URI names, or None for a server or object store."""
    if uri.startswith("sqlite:///"):
        return uri.removeprefix("sqlite:///")
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return None if "://" in uri else uri


def job_request(study_file: str | Path, tracking_uri: str | None, storage: str | None,
                force: bool = False, system_metrics: float | None = None, budget: float | None = None) -> JobRequest:  # fmt: skip
    """Validate STUDY and the options locally, and build the job; bad input raises SubmitError (status 2).

    The study's folder is the job's working directory, so a catalog file the
    study names must lie in it (the data the catalog points at must be on the
    nodes: the job checks that, as `tmx run` does). The tracking URI is
    required: the job's working directory on the head is temporary, so the
    default sqlite store inside it would be lost. A local path (for the
    tracking store or the storage) must be absolute: it means the same path on
    the head and on every worker (a shared mount).
    """
    from matrix.spec import SpecError, load_study

    try:
        study = load_study(study_file)
    except SpecError as e:
        raise SubmitError(str(e)) from None
    if not tracking_uri:
        raise SubmitError(f"--tracking-uri: a job on a cluster needs a tracking store that outlives it, such as "
                          f"http://MLFLOW:5000; pass --tracking-uri or set {ENV_TRACKING_URI}")  # fmt: skip
    path = _local_path(tracking_uri)
    if path is not None and not Path(path).is_absolute():
        raise SubmitError(f"--tracking-uri: {tracking_uri!r} is relative, so it would land in the job's temporary "
                          "folder on the head; use an MLflow server (http://MLFLOW:5000) or an absolute path")  # fmt: skip
    env = {ENV_TRACKING_URI: tracking_uri, ENV_TELEMETRY: "true"}
    if storage:
        path = _local_path(storage)
        if path is not None and not Path(path).is_absolute():
            raise SubmitError(f"--storage: {storage!r} is relative; give a folder every node mounts, as an absolute "
                              "path, or an object store URI such as s3://bucket/checkpoints")  # fmt: skip
        env[ENV_STORAGE] = storage
    folder = Path(study_file).resolve().parent
    if study.catalog is not None and not (folder / study.catalog).resolve().is_relative_to(folder):
        raise SubmitError(f"{study_file}: catalog: {study.catalog!r} is outside the study's folder, the only folder "
                          "the job uploads; keep the catalog file next to the study (or below it)")  # fmt: skip
    excludes = EXCLUDES
    if not study.out.is_absolute():
        excludes += (f"/{study.out.as_posix()}/",)
    flags = ["--force"] * force
    if system_metrics is not None:
        flags += ["--system-metrics", "--system-metrics-interval", f"{system_metrics:g}"]
    if budget is not None:
        flags += ["--budget", repr(budget)]
    entrypoint = shlex.join([*ENTRYPOINT, Path(study_file).name, *CLUSTER_ADDRESS, *flags])
    submission_id = f"tmx-{re.sub(r'[^A-Za-z0-9_-]', '-', study.name)}-{secrets.token_hex(4)}"
    return JobRequest(submission_id, entrypoint, folder, env, excludes, {"study": study.name, "submitted_by": "tmx"})


def auth_headers() -> dict[str, str]:
    """The Authorization header for a cluster with token auth, from RAY_AUTH_TOKEN, the file
    RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token (Ray's own order); empty when there is none."""
    token = os.environ.get(ENV_AUTH_TOKEN, "").strip()
    if not token:
        path = Path(os.environ.get(ENV_AUTH_TOKEN_PATH) or Path.home() / ".ray" / "auth_token").expanduser()
        try:
            token = path.read_text().strip()
        except OSError:
            if ENV_AUTH_TOKEN_PATH in os.environ:
                raise SubmitError(f"{ENV_AUTH_TOKEN_PATH}: cannot read the Ray auth token from {path}") from None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def connect(address: str):
    """A JobSubmissionClient for `address`, authenticated when a token is available; SubmitError (status 1)
    when the cluster does not answer or refuses the token."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except SubmitError:
        raise
    except Exception as e:  # ConnectionError, ray.exceptions.AuthenticationError, ...
        hint = ""
        if "uthenticat" in str(e):  # 401/403: no token, or the wrong one
            hint = f" (give the cluster's token with {ENV_AUTH_TOKEN} or {ENV_AUTH_TOKEN_PATH})"
        raise SubmitError(f"cannot use the Ray Jobs API at {address}: {_first_line(e)}{hint}", status=1) from None


def follow(client, job_id: str, echo: Callable[[str], None]) -> int:
    """Stream `job_id`'s logs through `echo` until the job ends; 0 if it SUCCEEDED, else 1."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            echo(lines)

    asyncio.run(tail())
    info = client.get_job_info(job_id)
    while str(info.status) not in TERMINAL:  # the log stream can close a moment before the status is final
        time.sleep(0.5)
        info = client.get_job_info(job_id)
    status = str(info.status)
    reason = (info.message or "").strip().splitlines()[:1] if status != "SUCCEEDED" else []  # the logs came above
    echo(f"job {job_id}: {status}" + "".join(f": {line.rstrip(':')}" for line in reason) + "\n")
    return 0 if status == "SUCCEEDED" else 1


def check_lease(request: JobRequest, echo: Callable[[str], None]) -> None:
    """SubmitError (status 2) naming the driver when a live one holds the study's lease in the job's tracking
    store. A store this machine cannot read is only noted: the job's own driver takes the lease on the cluster."""
    from matrix.lease import LeaseError, check_free

    uri, study = request.env_vars[ENV_TRACKING_URI], request.metadata["study"]
    try:
        check_free(uri, study)
    except LeaseError as e:
        raise SubmitError(str(e)) from None
    except Exception as e:  # unreachable from here: the driver on the cluster checks
        echo(f"Could not read study {study!r}'s lease in {uri} from here ({_first_line(e)}); the job's driver "
             "checks it\n")  # fmt: skip


def submit_study(study_file: str, address: str, tracking_uri: str | None, storage: str | None, wait: bool,
                 echo: Callable[[str], None], force: bool = False, system_metrics: float | None = None,
                 budget: float | None = None) -> int:  # fmt: skip
    """`tmx submit`: validate, submit, print how to follow the job; with `wait`, follow it.

    Returns the exit status (0 when submitted, or with `wait` when the job
    SUCCEEDED); raises SubmitError for bad input (status 2, before the cluster
    is contacted), for a cluster that cannot be used (status 1), and for a study
    a live driver runs (status 2, unless `force`: the job's driver then takes the
    study's lease over, `tmx run --force`). `system_metrics`: the job's driver samples each job's system every that
    many seconds (`tmx run --system-metrics`). `budget`: a budgeted sweep (`tmx run --budget`).
    """
    address = check_address(address)
    request = job_request(study_file, tracking_uri, storage, force, system_metrics, budget)
    client = connect(address)
    if not force:
        check_lease(request, echo)
    try:
        job_id = client.submit_job(**request.submit_kwargs())
    except Exception as e:  # the upload is too large, the runtime_env is refused, ...
        raise SubmitError(f"the Ray Jobs API at {address} refused the job: {_first_line(e)}", status=1) from None
    where = f"runs go to {request.env_vars[ENV_TRACKING_URI]}"
    if ENV_STORAGE in request.env_vars:
        where += f", checkpoints to {request.env_vars[ENV_STORAGE]}"
    else:
        where += ", checkpoints to the job's temporary folder on the head (no --storage: one-node clusters only)"
    echo(f"Submitted {job_id}: `{request.entrypoint}` in {request.working_dir}, on {address}\n  {where}\n"
         f"  follow: ray job logs --address {address} --follow {job_id}\n"
         f"  status: ray job status --address {address} {job_id}\n"
         f"  stop:   ray job stop --address {address} {job_id}\n")  # fmt: skip
    if not wait:
        return 0
    try:
        return follow(client, job_id, echo)
    except KeyboardInterrupt:
        echo(f"\nStopped following; job {job_id} goes on (ray job stop --address {address} {job_id} ends it)\n")
        return 130
