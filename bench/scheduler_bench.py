"""Bench: what the scheduler and tracking cost, and what parallel execution buys, in one run.

(a) overhead per job: ~2,000 no-op jobs through the real scheduler (embedded
    Ray, 2 workers) and the real tracker (sqlite MLflow); target <= 20 ms/job.
    Side by side: the same jobs with the tracker alone (in this process, no
    Ray), and as many no-op Ray tasks with no tracking: what each part costs.
(b) a real small study (tiny models, 32 px) on 2 cores with Ray against the
    same jobs one after another in one process; target speed-up >= 1.8x. The
    one process already uses both cores through torch's intra-op threads, so
    the same jobs in one process on one thread are timed too: Ray's scaling
    over what one core does. Each is split, from its runs' start and end times,
    into the time before its first job started, and the jobs phase from then
    until its last job ended.
(c) rerunning a finished 500-job study with `tmx run`: target <= 10 s, no job launched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from rich.console import Console  # noqa: E402

from matrix.results import JobResult
from matrix.store import Storage  # noqa: E402
from matrix.plan import plan  # noqa: E402
from matrix.scheduler import ray_session, run_jobs  # noqa: E402
from matrix.spec import load_study  # noqa: E402
from matrix.tracking import Tracker, default_tracking_uri  # noqa: E402


def noop(job, upstream, store) -> JobResult:
    now = time.time()
    return JobResult(job.key, {"miou": 0.5}, "miou", True, checkpoint="/dev/null", started=now, ended=now)


def study_yaml(name: str, datasets: int, seeds: int, steps: tuple[int, int] = (1, 1), size: int = 32) -> str:
    ds = "\n".join(f"  - {{name: d{i}, domain: {('driving', 'aerial', 'underwater', 'indoor')[i % 4]}, "
                    f"train: 32, val: 8}}" for i in range(datasets))  # fmt: skip
    return (f"name: {name}\nimage_size: {size}\ninit: scratch\ndatasets:\n{ds}\ntarget_sizes: [16]\n"
            f"seeds: {list(range(seeds))}\nsource: {{steps: {steps[0]}, batch_size: 8}}\n"
            f"finetune: {{steps: {steps[1]}, batch_size: 8}}\n")


def timed_noop_run(folder: Path, text: str, name: str, in_process: bool = False) -> tuple[int, float]:
    (folder / f"{name}.yaml").write_text(text)
    study = load_study(folder / f"{name}.yaml").model_copy(update={"output_dir": str(folder / "out" / name)})
    study.out.mkdir(parents=True)
    jobs = plan(study)
    tracker = Tracker(default_tracking_uri(study.out), study.name, artifact_root=study.out / "artifacts")
    t0 = time.perf_counter()
    run_jobs(jobs, tracker, Storage(study.out / "ck"), max_parallel=2, fn=noop, in_process=in_process,
             console=Console(file=open(os.devnull, "w")))  # fmt: skip
    return len(jobs), time.perf_counter() - t0


def nothing() -> None:
    pass


def timed_ray_tasks(n: int) -> float:
    """`n` no-op tasks on an embedded 2-CPU Ray, started, run and shut down: Ray's part of (a), with no tracking."""
    t0 = time.perf_counter()
    with ray_session(None, 2) as ray:  # the scheduler's own embedded cluster
        task = ray.remote(num_cpus=1)(nothing)
        ray.get([task.remote() for _ in range(n)])
    return time.perf_counter() - t0


def phases(uri: str, study: str, launched: float) -> tuple[float, float]:
    """(seconds from launch to the first job's start, seconds from then to the last job's end) of a study's runs."""
    runs = [r for r in Tracker(uri, study, create=False).runs() if r.data.tags.get("kind") != "study"]
    first, last = min(r.info.start_time for r in runs) / 1000, max(r.info.end_time for r in runs) / 1000
    return first - launched, last - first


def cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).with_name("tmx")), *args], cwd=folder, capture_output=True,
                         text=True, check=True, env=os.environ | (env or {}))  # fmt: skip
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # (a) 11 datasets x 2 tasks = 22 pairs; 4 seeds: 22 sources + 4 * (22 * 21 + 22) = 1958 finetunes
        n, wall = timed_noop_run(folder, study_yaml("overhead", 11, 4), "overhead")
        per_job = wall / n * 1000
        _, alone = timed_noop_run(folder, study_yaml("tracker", 11, 4), "tracker", in_process=True)
        ray_only = timed_ray_tasks(n)
        print(f"(a) {n} no-op jobs through Ray + sqlite MLflow: {wall:.1f} s, {per_job:.1f} ms/job; "
              f"target 20 ms: ratio {per_job / 20:.2f}. Side by side: the tracker alone (no Ray) "
              f"{alone / n * 1000:.1f} ms/job, Ray alone ({n} no-op tasks, no tracking) {ray_only / n * 1000:.1f} ms/task")

        # (b) the same real jobs with Ray (2 workers) and one after another in this process
        (folder / "real.yaml").write_text(study_yaml("real", 3, 1, steps=(60, 20)))
        took, split = {}, {}
        for mode, args, env in (("seq", ["--in-process"], None), ("one", ["--in-process"], {"OMP_NUM_THREADS": "1"}),
                                ("par", [], None)):  # fmt: skip
            uri, launched = f"sqlite:///{folder}/{mode}.db", time.time()
            took[mode], _ = cli(folder, "run", "real.yaml", "--tracking-uri", uri, *args, env=env)
            split[mode] = phases(uri, "real", launched)
            (folder / "outputs").rename(folder / f"outputs-{mode}")
        jobs = len(plan(load_study(folder / "real.yaml")))
        seq, one, par = took["seq"], took["one"], took["par"]
        before = " / ".join(f"{split[m][0]:.1f} s" for m in ("seq", "one", "par"))
        phase = " / ".join(f"{split[m][1]:.1f} s" for m in ("seq", "one", "par"))
        print(f"(b) {jobs} real jobs: one process {seq:.1f} s (one thread: {one:.1f} s), Ray on 2 cores {par:.1f} s; "
              f"speed-up {seq / par:.2f}x (target 1.8x; over one thread {one / par:.2f}x). Before the first job, "
              f"one process / one thread / Ray: {before}; jobs phase: {phase}, speed-up "
              f"{split['seq'][1] / split['par'][1]:.2f}x (over one thread {split['one'][1] / split['par'][1]:.2f}x)")

        # (c) rerun of a finished 500-job study: 8 datasets x 2 tasks = 16 pairs, 2 seeds: 16 + 2 * (16*15+16) = 528
        n, _ = timed_noop_run(folder, study_yaml("rerun", 8, 2), "rerun")
        text = (folder / "rerun.yaml").read_text() + f"output_dir: {folder / 'out' / 'rerun'}\n"
        (folder / "rerun.yaml").write_text(text)
        took, out = cli(folder, "run", "rerun.yaml")
        assert "No job launched" in out, out
        print(f"(c) rerun of a finished {n}-job study: {took:.1f} s, no job launched; target 10 s: ratio {took / 10:.2f}")


if __name__ == "__main__":
    main()
