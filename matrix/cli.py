"""`tmx`: plan, run, report and browse a transfer study.

    tmx run configs/demo.yaml          # every job without a FINISHED run, on local Ray
    tmx report configs/demo.yaml       # outputs/demo/report.html and gains.csv
    tmx ui configs/demo.yaml           # the MLflow UI on 127.0.0.1

Bad input exits with status 2 and one line naming the file, the field and
what was expected, before Ray or MLflow start.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from matrix.datasets_cli import datasets
from matrix.datasets_cli import fail as _fail
from matrix.spec import ProxySpec, SpecError, Study, load_study
from matrix.system_metrics import DEFAULT_INTERVAL


def _study(path: str, need_data: bool = False) -> Study:
    try:
        study = load_study(path)
    except SpecError as e:
        _fail(str(e))
    missing = study.missing_data() if need_data else {}
    if missing:  # every missing dataset at once: a headline, then one line per dataset
        catalog = study.resolved_catalog
        click.echo(f"tmx: {path}: {len(missing)} catalog datasets are not on disk; place them where {catalog.file} "
                   f"expects them (root {catalog.root_dir}) or edit its root and paths (docs/datasets.md):", err=True)  # fmt: skip
        for name, paths in missing.items():
            more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
            click.echo(f"  {name}: {paths[0]}{more}", err=True)
        sys.exit(2)
    from tasks.backbone_names import imagenet_weights_path, missing_weights

    if study.init == "imagenet" and imagenet_weights_path(study.backbone) is None:
        _fail(f"{path}: init: 'imagenet': {missing_weights(study.backbone)}; or use init: generic")
    return study


def _plan_jobs(study: Study, path: str, budgeted: bool = False) -> list:
    """The study's jobs; a catalog dataset whose size cannot be known (no data, no size given) exits 2.

    `budgeted`: as a budgeted sweep plans them, with a proxy job per transfer (the defaults if the study names no
    `proxies:`): the sweep ranks sources by them."""
    from matrix.plan import plan as make_plan

    if budgeted and study.proxies is None:
        study = study.model_copy(update={"proxies": ProxySpec()})
    try:
        return make_plan(study)
    except SpecError as e:
        _fail(f"{path}: {e}")


def _budget_failed(budget: float, path: str, error: ValueError):
    """Exit 2: `--budget` does not fit the study (less than one transfer, no transfer at all, ...)."""
    _fail(f"--budget {budget:g}: {path}: {str(error).removeprefix('budget: ')}")


def _tracking_uri(study: Study, uri: str | None) -> str:
    from matrix.tracking import default_tracking_uri

    return uri or default_tracking_uri(study.out)


study_arg = click.argument("study_file", metavar="STUDY", type=click.Path(dir_okay=False))
uri_opt = click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                       help="MLflow tracking URI (default: sqlite in the study's output folder)")
system_metrics_opt = click.option("--system-metrics", is_flag=True,
                                  help="Sample CPU, memory and GPUs while each job runs; its run shows them under "
                                       "MLflow's system metrics (system/...)")  # fmt: skip
budget_opt = click.option("--budget", type=click.FloatRange(0, 1, min_open=True), metavar="FRACTION",
                          help="A budgeted sweep: run every proxy, then only this fraction of the transfers, those the "
                               "policy picks as it measures them (e.g. 0.2); the report predicts the rest")  # fmt: skip
interval_opt = click.option("--system-metrics-interval", type=click.FloatRange(min=0.1), default=DEFAULT_INTERVAL,
                            show_default=True, help="Seconds between two samples of --system-metrics")  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Transfer-learning studies across image domains and task types."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # for this process and the servers and jobs it starts


@main.command()
@study_arg
@uri_opt
@click.option("--jobs", "show_jobs", is_flag=True, help="List every job with its key.")
@click.option("--power", "power_effect", metavar="EFFECT",
              help="Also estimate, by simulating the study, the power to detect each factor's effect of this size "
                   "in gain (0.05 or 5% = 5 points of relative gain) at p < 0.05, and what would reach 80%")
@click.option("--pilot", "pilot_file", metavar="PILOT", type=click.Path(dir_okay=False),
              help="With --power: a finished study (its YAML, or its runs from `tmx export` as .parquet) whose runs "
                   "give the variance components (default: this study's finished runs, else assumed ones)")
@click.option("--sims", default=200, show_default=True, type=click.IntRange(min=20),
              help="With --power: simulated studies per factor")
@budget_opt
def plan(study_file: str, tracking_uri: str | None, show_jobs: bool, power_effect: str | None,
         pilot_file: str | None, sims: int, budget: float | None) -> None:  # fmt: skip
    """Print the jobs a study consists of, per kind, target size and seed, with a cost estimate.

    The hours per job come from the study's finished runs (mean duration per
    kind) where there are some, else from the study's `estimates`. With
    --power, the chance that the study finds each factor's effect (see
    analysis/power.py), before any of it runs.
    """
    from matrix.plan import count_by_kind

    effect = None
    if power_effect is not None:
        text = power_effect.strip()
        try:
            effect = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            effect = float("nan")
        if not 0 < effect <= 1:
            _fail(f"--power: {power_effect!r} is not an effect size in gain between 0 and 1: pass e.g. --power 0.05 "
                  f"(or 5%) for 5 points of relative gain")  # fmt: skip
    elif pilot_file is not None:
        _fail("--pilot: only with --power EFFECT (the pilot's runs give the variance components of the power "
              "simulation)")  # fmt: skip
    study = _study(study_file, need_data=True)
    jobs = _plan_jobs(study, study_file, budgeted=budget is not None)
    counts = count_by_kind(jobs)
    planned = counts.get("transfer", 0)
    if budget is not None and planned:  # what `tmx run --budget` pays for
        from analysis.policy import budget_pairs

        try:
            counts["transfer"] = budget_pairs(counts["transfer"], budget)
        except ValueError as e:
            _budget_failed(budget, study_file, e)
    spread = None
    if effect is not None:  # the random effects' spread: the pilot's, else this study's finished runs', else assumed
        from analysis.power import ASSUMED, MIN_PILOT, components_from_runs

        if pilot_file is not None and pilot_file.endswith(".parquet"):  # its runs, exported by `tmx export`
            from analysis.load import read_runs

            try:
                spread = components_from_runs(read_runs(pilot_file), f"the pilot runs {Path(pilot_file).name}")
            except (OSError, ValueError) as e:
                _fail(f"--pilot {pilot_file}: cannot read runs: {e}")
        elif pilot_file is not None:
            pilot = _study(pilot_file)
            spread = components_from_runs(_load_runs(pilot, pilot_file, None), f"the pilot {pilot.name!r}")
        elif tracking_uri is not None or (study.out / "mlflow.db").exists():
            from analysis.load import load_runs

            try:
                spread = components_from_runs(load_runs(_tracking_uri(study, tracking_uri), study.name),
                                              "this study's finished runs")  # fmt: skip
            except LookupError:
                spread = None
        if spread is None and pilot_file is not None:
            _fail(f"--pilot {pilot_file}: fewer than {MIN_PILOT} counted transfers (finished, with a baseline that "
                  f"beats its trivial predictor) to measure the variance components on; run more of it first")  # fmt: skip
        spread = spread or ASSUMED
    measured: dict[str, list[float]] = {}
    if tracking_uri is not None or (study.out / "mlflow.db").exists():
        from matrix.tracking import Tracker

        for run in Tracker(_tracking_uri(study, tracking_uri), study.name, create=False).runs("FINISHED"):
            if "duration_s" in run.data.metrics:
                measured.setdefault(run.data.tags.get("kind", ""), []).append(run.data.metrics["duration_s"] / 3600)
    swept = f" (a budgeted sweep: {counts.get('transfer', 0)} of the {planned} planned transfers)" if budget else ""
    click.echo(f"study {study.name}: {sum(counts.values())} jobs{swept}")
    total = 0.0
    for kind, n in counts.items():
        if measured.get(kind):
            per, source = sum(measured[kind]) / len(measured[kind]), f"mean of {len(measured[kind])} finished runs"
        elif kind in study.estimates:
            per, source = study.estimates[kind], "the study's estimates"
        else:
            click.echo(f"  {kind:<9} {n:>6}   (no estimate: add estimates.{kind} to the study, or run some)")
            continue
        total += per * n
        click.echo(f"  {kind:<9} {n:>6}   {per * n:9.2f} h  ({per * 3600:.0f} s each, {source})")
    click.echo(f"  estimated total: {total:.2f} device-hours (excluding kinds with no estimate)")
    for size in study.target_sizes:
        for seed in study.seeds:
            n = sum(1 for j in jobs if j.kind in ("transfer", "baseline") and j.train.count == size and j.seed == seed)
            click.echo(f"  target size {size}, seed {seed}: {n} finetunes" + (" in the full matrix" if budget else ""))
    if show_jobs:
        for job in jobs:
            click.echo(f"{job.key}  {job.name}")
    if effect is not None:
        from rich.console import Console

        from analysis.power import design_frame, power_lines

        design = design_frame(jobs)
        if design.empty:
            _fail(f"{study_file}: the study plans no transfer (no source, or no target): there is nothing to power")
        with Console(stderr=True).status(f"simulating {sims} studies per factor ..."):
            lines = power_lines(design, spread, effect, sims)
        for line in lines:
            click.echo(line)


@main.command()
@study_arg
@uri_opt
@click.option("--address", help="Ray cluster address (default: start an embedded local cluster)")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Jobs at once on the local cluster (default: CPUs)")
@click.option("--in-process", is_flag=True, help="Run the jobs one after another in this process, without Ray")
@click.option("--storage", envvar="TMX_STORAGE", show_envvar=True,
              help="Storage root for checkpoints (ROOT/checkpoints) and decoded data (ROOT/data): a folder every node "
                   "sees, or an fsspec URI such as s3://bucket/path (default: OUTPUT)")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Take the study's lease even from a live driver, which then stops (default: exit 2 naming it)")
@system_metrics_opt
@interval_opt
@budget_opt
def run(study_file: str, tracking_uri: str | None, address: str | None, max_parallel: int | None,
        in_process: bool, storage: str | None, force: bool, system_metrics: bool,
        system_metrics_interval: float, budget: float | None) -> None:  # fmt: skip
    """Run every job of STUDY that has no FINISHED run yet.

    One driver at a time runs a study: this one takes the study's lease in the tracking store first, and exits 2
    naming the driver that holds it (host, process, since when) unless that driver's heartbeat has stopped.

    With --budget B, a budgeted sweep (matrix/budget.py): every job but the transfers (the proxies included), then
    floor(B x transfers) transfers, chosen a batch at a time by the policy (analysis/policy.py); `tmx report`
    predicts the others. Transfers already run count against the budget: a larger budget runs only the difference.
    """
    from matrix.lease import LeaseError, take_lease
    from matrix.scheduler import run_jobs
    from matrix.store import Storage
    from matrix.tracking import Tracker

    study = _study(study_file, need_data=True)
    jobs = _plan_jobs(study, study_file, budgeted=budget is not None)
    sweep = None
    if budget is not None:
        from matrix.budget import Budgeted

        try:
            sweep = Budgeted(jobs, budget)
        except ValueError as e:
            _budget_failed(budget, study_file, e)
    study.out.mkdir(parents=True, exist_ok=True)
    uri = _tracking_uri(study, tracking_uri)
    local_store = uri.startswith(("sqlite:", "file:", "/"))  # a server decides where artifacts go
    artifact_root = study.out / "mlartifacts" if local_store else None
    store = Storage(storage or study.out)
    leases = []  # this driver's lease on the study, once taken

    def say(line: str) -> None:
        click.echo(f"tmx: {line}", err=True)

    def open_tracker() -> Tracker:
        """The lease first (it creates a new store and the study's experiment), then the tracker under it."""
        leases.append(take_lease(uri, study.name, artifact_root, force, say))
        tracker = Tracker(uri, study.name, artifact_root=artifact_root)
        # the report predicts the transfers a budgeted sweep did not run; a full run plans them all
        tracker.tag_study({"budget": None if budget is None else f"{budget:g}"})
        return tracker

    try:
        with ThreadPoolExecutor(1) as pool:
            # a new sqlite store takes seconds to create (MLflow's schema migrations): Ray starts meanwhile
            new = uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()
            tracker = pool.submit(open_tracker) if new and not in_process else open_tracker()
            summary = run_jobs(sweep.fixed if sweep else jobs, tracker, store, address, max_parallel,
                               in_process=in_process, resources=study.ray_resources(),
                               system_metrics=system_metrics_interval if system_metrics else None, steer=sweep,
                               described=jobs)  # fmt: skip
    except LeaseError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        if leases and leases[0].lost:  # another driver took the study over: the lease interrupted this one
            _fail(leases[0].lost)
        _fail(f"interrupted: finished jobs are recorded in {uri}; run `tmx run {study_file}` again to go on", 130)
    finally:
        for lease in leases:
            lease.release()
    if sweep is not None and sweep.result is not None:
        order = sweep.result.order
        phases = order["phase"].value_counts()
        click.echo(f"Budget {budget:g}: {len(order)} of {sweep.planned} transfers measured ({phases.get('known', 0)} "
                   f"already, {phases.get('proxy', 0)} chosen by the proxies, {phases.get('model', 0)} by the model); "
                   f"tmx report {study_file} predicts the other {sweep.planned - len(order)}.")  # fmt: skip
    if summary.ran == 0 and not summary.skipped:
        click.echo(f"Nothing to run: all {summary.total} jobs of study {study.name!r} already have a FINISHED run "
                   f"in {uri}. No job launched.")  # fmt: skip
        return
    done = ", ".join(f"{n} {k}" for k, n in summary.finished.items()) or "none"
    click.echo(f"Ran {summary.ran} jobs ({summary.already_done} were already done): finished {done}; "
               f"{len(summary.failed)} failed, {len(summary.skipped)} skipped.")  # fmt: skip
    for name, reason in summary.failed.items():
        click.echo(f"  failed: {name}: {reason}")
    for name, reason in summary.skipped.items():
        click.echo(f"  skipped: {name}: {reason}")
    click.echo(f"Runs: {uri}; next: tmx report {study_file}")
    if summary.failed or summary.skipped:
        sys.exit(1)


def _load_runs(study: Study, study_file: str, tracking_uri: str | None):
    from analysis.load import load_runs

    if tracking_uri is None and not (study.out / "mlflow.db").exists():
        _fail(f"{study_file}: no runs yet: {study.out / 'mlflow.db'} does not exist; run `tmx run {study_file}` first")
    try:
        return load_runs(_tracking_uri(study, tracking_uri), study.name)
    except LookupError as e:
        _fail(str(e))


@main.command()
@study_arg
@uri_opt
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Folder for the report (default: the study's)")
@click.option("--runs", "runs_file", type=click.Path(dir_okay=False), help="Read runs from a `tmx export` parquet file")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=100), help="Bootstrap resamples")
def report(study_file: str, tracking_uri: str | None, output: str | None, runs_file: str | None, bootstrap: int) -> None:
    """Write report.html, report.md, gains.csv and pairs.csv from the study's runs."""
    import pandas as pd

    from analysis.load import read_runs
    from analysis.report import analyse, write_report

    study = _study(study_file)
    if runs_file is not None:
        try:
            runs = read_runs(runs_file)
        except (OSError, ValueError) as e:
            _fail(f"{runs_file}: cannot read runs: {e}")
    else:
        runs = _load_runs(study, study_file, tracking_uri)
    tracker = None
    if runs_file is None:
        from matrix.tracking import Tracker

        tracker = Tracker(_tracking_uri(study, tracking_uri), study.name)
    budgeted = tracker is not None and "budget" in tracker.study_tags()  # `tmx run --budget` ran it
    planned = _plan_jobs(study, study_file, budgeted)
    expected = pd.DataFrame([{"kind": j.kind, "name": j.name, "job_key": j.key} for j in planned])
    result = analyse(runs, expected, n_boot=bootstrap, budgeted=budgeted)
    paths = write_report(result, Path(output) if output else study.out, study.name)
    if tracker is not None:
        tracker.log_report([p for k, p in paths.items() if k.endswith(".png") or k == "html"])
    held = (result.findings["status"] == "held").sum()
    counted = int(result.gains["included"].sum()) if "included" in result.gains else len(result.gains)
    left_out = result.baselines["beats_reference"].eq(False).sum()
    click.echo(f"Wrote {paths['html']}, {paths['md']} and {paths['csv']}: {len(result.gains)} transfers with "
               f"baselines ({counted} counted; {left_out} targets left out: their baseline does not beat the "
               f"trivial predictor), {held} of {len(result.findings)} findings held, {len(result.failed)} failed "
               f"and {len(result.missing)} missing jobs")  # fmt: skip
    if "proxies" in paths:
        click.echo(f"Wrote {paths['proxies']}: {len(result.proxies)} counted transfers beside their proxies; "
                   f"replay a budgeted sweep on them: tmx replay {paths['proxies']} --budget 0.2")  # fmt: skip
    if "predicted" in paths:
        p = result.predicted
        click.echo(f"Wrote {paths['predicted']}: a budgeted sweep, {int(p['measured'].sum())} of {len(p)} transfers "
                   f"measured and {int((~p['measured']).sum())} predicted, with intervals")  # fmt: skip


@main.command()
@study_arg
@uri_opt
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Parquet file to write")
def export(study_file: str, tracking_uri: str | None, output: str) -> None:
    """Export every job run of the study as one tidy table (parquet)."""
    from analysis.load import write_runs

    study = _study(study_file)
    runs = _load_runs(study, study_file, tracking_uri)
    click.echo(f"Wrote {write_runs(runs, output)}: {len(runs)} runs")


@main.command()
@study_arg
@uri_opt
@click.option("--json", "as_json", is_flag=True, help="Print {kinds: [...], failed: [...]} as JSON")
def status(study_file: str, tracking_uri: str | None, as_json: bool) -> None:
    """Jobs done, running, failed, skipped and pending per kind, from the tracking store, with reasons."""
    from rich.console import Console
    from rich.table import Table

    from matrix.status import FIELDS, study_status
    from matrix.tracking import Tracker

    study = _study(study_file)
    uri = _tracking_uri(study, tracking_uri)
    runs, budget = [], None
    if tracking_uri is not None or (study.out / "mlflow.db").exists():
        tracker = Tracker(uri, study.name, create=False)
        runs = [(r.data.tags.get("job_key", ""), r.info.status, r.data.tags.get("error"), r.info.start_time or 0)
                for r in tracker.runs(status=None) if r.data.tags.get("kind") != "study"]  # fmt: skip
        budget = tracker.study_tags().get("budget")  # `tmx run --budget` ran it
    jobs = _plan_jobs(study, study_file, budgeted=bool(budget))
    rows, failed = study_status(jobs, runs)
    if as_json:
        click.echo(json.dumps({"study": study.name, "tracking_uri": uri, "budget": float(budget) if budget else None,
                               "kinds": rows, "failed": failed}, indent=1))  # fmt: skip
        return
    table = Table(title=f"study {study.name} ({uri})")
    for col in ("kind", *FIELDS):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("kind", *FIELDS)))
    console = Console()
    console.print(table)
    if budget:
        from analysis.policy import budget_pairs

        planned = sum(1 for j in jobs if j.kind == "transfer")
        console.print(f"a budgeted sweep (tmx run --budget {budget}): {budget_pairs(planned, float(budget))} of the "
                      f"{planned} planned transfers are run; tmx report predicts the others", highlight=False)  # fmt: skip
    for f in failed:
        if f["state"] == "failed":
            console.print(f"failed: {f['name']} ({f['job_key']}): {f['error']}", highlight=False)
    skipped = Counter(f["error"] for f in failed if f["state"] == "skipped")  # one line per failed upstream
    for reason, n in skipped.items():
        console.print(f"{n} job{'s' * (n > 1)} {reason}", highlight=False)


@main.command()
@study_arg
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="MLflow tracking URI the job logs to: a server every node reaches, http://MLFLOW:5000 (required)")
@click.option("--address", required=True, envvar="RAY_API_SERVER_ADDRESS", show_envvar=True,
              help="The cluster's Jobs API: http://HEAD:8265 (auth token from RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")
@click.option("--storage", envvar="TMX_STORAGE", show_envvar=True,
              help="Storage (checkpoints, decoded data) every node reaches: s3://bucket/path, gs://..., or an absolute shared path")
@click.option("--wait/--no-wait", default=False, show_default=True, help="Stream the job's logs; exit with its status")
@click.option("--force", is_flag=True,
              help="Submit even while a live driver holds the study's lease: the job's driver takes it over")
@system_metrics_opt
@interval_opt
@budget_opt
def submit(study_file: str, tracking_uri: str | None, address: str, storage: str | None, wait: bool,
           force: bool, system_metrics: bool, system_metrics_interval: float, budget: float | None) -> None:  # fmt: skip
    """Run STUDY on a Ray cluster as a Ray Job: `tmx run STUDY --address auto` on its head (cluster/README.md).

    A study whose lease a live driver holds is not submitted (exit 2, naming that driver) unless --force.
    """
    from matrix.submit import SubmitError, submit_study

    try:
        sys.exit(submit_study(study_file, address, tracking_uri, storage, wait, lambda s: click.echo(s, nl=False),
                              force=force, system_metrics=system_metrics_interval if system_metrics else None,
                              budget=budget))  # fmt: skip
    except SubmitError as e:
        _fail(str(e), e.status)


@main.command()
@study_arg
@uri_opt
@click.option("--trials", type=click.IntRange(min=1), default=8, show_default=True, help="Trials per target task type")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the search")
@click.option("--address", help="Ray cluster address (default: start an embedded local cluster)")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Trials at once on the local cluster (default: CPUs)")
@click.option("--storage", envvar="TMX_STORAGE", help="Storage root (checkpoints, decoded data), as for `tmx run`")
def tune(study_file: str, tracking_uri: str | None, trials: int, seed: int, address: str | None,
         max_parallel: int | None, storage: str | None) -> None:  # fmt: skip
    """Search finetuning lr and weight decay per task type (Ray Tune, ASHA) on STUDY's baseline jobs.

    The best values are written into STUDY's `finetune_by_task` block, which the
    plan applies to every finetuning job of that task type.
    """
    from matrix.plan import plan as make_plan
    from matrix.store import Storage
    from matrix.tracking import Tracker
    from matrix.tune import tune_study, write_tuned

    study = _study(study_file)
    upstream = None
    if study.init == "generic":
        pretrain = next(j for j in make_plan(study) if j.kind == "pretrain")
        uri = _tracking_uri(study, tracking_uri)
        done = Tracker(uri, study.name, create=False).finished() if tracking_uri or (study.out / "mlflow.db").exists() else {}
        upstream = done.get(pretrain.key)
        if upstream is None:
            _fail(f"{study_file}: init: 'generic': the baselines start from the pretrain job, which has no FINISHED "
                  f"run in {uri}; run `tmx run {study_file}` first (or tune with init: scratch)")  # fmt: skip
    store = Storage(storage or study.out)
    best = tune_study(study, store, upstream, trials=trials, seed=seed, address=address, max_parallel=max_parallel)
    write_tuned(Path(study_file), best, {task: spec.model_dump(exclude_none=True)
                                          for task, spec in study.finetune_by_task.items()})  # fmt: skip
    for task, v in best.items():
        click.echo(f"{task}: lr {v['lr']:.3g}, weight_decay {v['weight_decay']:.3g} (mean primary score {v['score']:.4g}, "
                   f"{v['trials']} trials)")  # fmt: skip
    click.echo(f"Wrote finetune_by_task into {study_file}; `tmx run {study_file}` reruns the finetuning jobs with them.")


@main.command()
@click.argument("table_file", metavar="TABLE.csv", type=click.Path(dir_okay=False))
@click.option("--budget", type=float, default=0.2, show_default=True, help="Fraction of the table's pairs each policy runs")
@click.option("--lower-is-better", is_flag=True, help="Lower values are better (an error such as depth AbsRel)")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the budgeted policy and of random selection")
@click.option("--json", "as_json", is_flag=True, help="Print {policies: {budgeted, random, proxy_top_k}} as JSON")
def replay(table_file: str, budget: float, lower_is_better: bool, seed: int, as_json: bool) -> None:
    """Replay the budgeted-sweep policy on a complete table of results, beside random selection and proxy-top-k.

    TABLE.csv has one row per (target, source) pair: `target`, `source`, `value` (the measured metric or gain),
    one or more `proxy.NAME` columns (a transferability score, higher = expected to transfer better) and
    optionally `same_domain`, `same_task` (true/false) and `source_size`. Each policy runs floor(budget x pairs)
    pairs; printed per policy: pairs_run, best_found (targets whose true best source was run), top3_recall and
    mean_regret (true best minus best run, in the value's units). Random is the mean of 20 seeded draws.
    """
    path = Path(table_file)
    if not path.is_file():
        _fail(f"{table_file}: file: not found; expected a CSV table with columns target, source, value, proxy.NAME")
    import numpy as np
    import pandas as pd

    from analysis.policy import TableError, budget_pairs, check_table
    from analysis.policy import replay as replay_table

    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        _fail(f"{table_file}: file: cannot be read as CSV ({str(e).splitlines()[0]}); expected a header line and one "
              "row per (target, source) pair")  # fmt: skip
    raw = raw.mask(raw.apply(lambda c: c.str.strip() == ""))  # empty cells: missing
    try:
        table = check_table(raw)
        n_budget = budget_pairs(len(table), budget)
    except TableError as e:
        _fail(f"{table_file}: {e}")
    except ValueError as e:  # the budget
        _fail(f"{table_file}: --{e}")
    result = replay_table(table, budget, higher_is_better=not lower_is_better, seed=seed)
    if as_json:
        click.echo(json.dumps({"table": table_file, "pairs": len(table), "targets": int(table["target"].nunique()),
                               "budget": budget, "budget_pairs": n_budget, "higher_is_better": not lower_is_better,
                               "policies": result}, indent=1))  # fmt: skip
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"{table['target'].nunique()} targets, {len(table)} pairs, budget {budget:g} = {n_budget} pairs, "
                      f"{'lower' if lower_is_better else 'higher'} is better")  # fmt: skip
    metrics = ("pairs_run", "best_found", "top3_recall", "mean_regret")
    for col in ("policy", *metrics):
        out.add_column(col, justify="left" if col == "policy" else "right")
    for name, m in result.items():
        out.add_row(name, *(f"{m[k]:.3f}" if np.isfinite(m[k]) else "-" for k in metrics))
    Console().print(out)


@main.command()
@study_arg
@uri_opt
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(study_file: str, tracking_uri: str | None, port: int) -> None:
    """Serve the MLflow UI for the study's runs on 127.0.0.1 and print the URL of its runs page.

    The server stops with `tmx ui`: on Ctrl-C, SIGTERM or SIGHUP. With an MLflow server as the tracking URI,
    nothing is started: the URL of the study's runs page on that server is printed.
    """
    from matrix.tracking import Tracker
    from matrix.ui import HOST, ServerExited, port_in_use, runs_url, serve_ui

    study = _study(study_file)
    uri = _tracking_uri(study, tracking_uri)
    if tracking_uri is None and not (study.out / "mlflow.db").exists():
        _fail(f"{study_file}: no runs yet: {study.out / 'mlflow.db'} does not exist; run `tmx run {study_file}` first")
    experiment = Tracker(uri, study.name, create=False).experiment_id
    if experiment is None:
        _fail(f"{study_file}: no runs of study {study.name!r} in {uri} yet; run `tmx run {study_file}` first")
    if uri.startswith(("http://", "https://")):  # already served
        click.echo(f"Runs of study {study.name!r}: {runs_url(uri, experiment)}")
        return
    if port_in_use(port):
        _fail(f"--port: port {port} on {HOST} is in use (another `tmx ui`?); pass a free one, e.g. --port {port + 1}")
    click.echo(f"Starting the MLflow UI on {HOST}:{port} ...", err=True)
    url = runs_url(f"http://{HOST}:{port}", experiment)
    try:
        status = serve_ui(uri, port, url, lambda u: click.echo(f"Runs of study {study.name!r}: {u}  (Ctrl-C stops the UI)"))
    except ServerExited as e:
        _fail(str(e), 1)
    sys.exit(status)


main.add_command(datasets)  # tmx datasets: list, check, export, show (matrix/datasets_cli.py)

if __name__ == "__main__":
    main()
