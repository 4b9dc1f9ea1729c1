"""`tmx tune`: a Ray Tune search of finetuning hyperparameters on a study's baseline jobs.

    best = tune_study(study, store, upstream, trials=8)      # {task: {"lr": .., "weight_decay": ..}}
    write_tuned(Path("study.yaml"), best)                     # the study's `finetune_by_task:` block

Per target task type, each trial finetunes every baseline target of that task
(the smallest target size, the first seed) with one sampled (lr,
weight_decay), one target after another, and reports the running mean of the
primary metric (negated where lower is better) after each; ASHA stops the
weak trials after their first targets. The best values go into the study
file's `finetune_by_task` block, which the plan applies to that task's
baseline, transfer and scratch jobs (so their keys change and they rerun).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from matrix.execute import execute
from matrix.results import JobResult
from matrix.store import Storage
from matrix.plan import Job, plan
from matrix.spec import Study

SPACE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-2)}  # log-uniform ranges searched


def tune_targets(study: Study) -> dict[str, list[Job]]:
    """Per target task type, its baseline jobs at the smallest target size and the first seed."""
    size, seed = min(study.target_sizes), study.seeds[0]
    out: dict[str, list[Job]] = {}
    for job in plan(study):
        if job.kind == "baseline" and job.train.count == size and job.seed == seed:
            out.setdefault(job.task, []).append(job)
    return out


def _trial(config: dict[str, Any], targets: list[Job], upstream: JobResult | None, store: Storage) -> None:
    from ray import tune

    scores = []
    for job in targets:
        trial_job = replace(job, schedule=job.schedule | {"lr": config["lr"], "weight_decay": config["weight_decay"]})
        result = execute(trial_job, upstream, store)
        value = result.metrics[result.primary_metric]
        scores.append(value if result.higher_is_better else -value)
        tune.report({"score": sum(scores) / len(scores), "targets": len(scores)})


def tune_study(study: Study, store: Storage, upstream: JobResult | None, trials: int = 8, seed: int = 0,
               address: str | None = None, max_parallel: int | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Search (lr, weight_decay) per target task type; returns {task: {lr, weight_decay, score, trials}}.

    `upstream` is the init's result (the pretrain job's, for `init: generic`), or None.
    """
    from matrix.scheduler import ray_session

    best: dict[str, dict[str, Any]] = {}
    with ray_session(address, max_parallel, env={"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}):
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search import BasicVariantGenerator

        for task, targets in tune_targets(study).items():
            trainable = tune.with_parameters(_trial, targets=targets, upstream=upstream, store=store)
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={k: tune.loguniform(lo, hi) for k, (lo, hi) in SPACE.items()},
                tune_config=tune.TuneConfig(
                    metric="score", mode="max", num_samples=trials,
                    scheduler=ASHAScheduler(time_attr="targets", max_t=len(targets), grace_period=1),
                    search_alg=BasicVariantGenerator(random_state=seed),
                ),
                run_config=tune.RunConfig(name=f"tune-{task}", storage_path=str((study.out / "tune").resolve()),
                                          verbose=0),
            )  # fmt: skip
            result = tuner.fit().get_best_result(metric="score", mode="max", scope="last")
            if result.metrics is None or result.error is not None:
                raise RuntimeError(f"tuning {task}: no trial finished ({result.error})")
            best[task] = {"lr": float(result.config["lr"]), "weight_decay": float(result.config["weight_decay"]),
                          "score": float(result.metrics["score"]), "trials": trials}  # fmt: skip
    return best


def write_tuned(study_file: Path, best: dict[str, dict[str, Any]],
                kept: dict[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
    """Replace (or add) the study file's top-level `finetune_by_task:` block; other lines, comments included, stay.

    `best`: per task type the tuned lr and weight_decay; `kept`: per task type the block's other values (steps,
    batch_size: `TunedSpec.model_dump(exclude_none=True)`), which stay beside them, for other task types too."""
    lines = study_file.read_text().splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith("# written by `tmx tune`"):
            continue
        if re.match(r"^finetune_by_task\s*:", line):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t", "#")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    block = {task: dict(values) for task, values in (kept or {}).items()}
    for task, v in best.items():
        tuned = {"lr": float(f"{v['lr']:.3g}"), "weight_decay": float(f"{v['weight_decay']:.3g}")}
        block[task] = block.get(task, {}) | tuned
    block = dict(sorted(block.items()))
    out.append(f"# written by `tmx tune` ({next(iter(best.values()))['trials']} trials per task type, ASHA)")
    out.append(yaml.safe_dump({"finetune_by_task": block}, sort_keys=True, default_flow_style=None).rstrip())
    study_file.write_text("\n".join(out) + "\n")
