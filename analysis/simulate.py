"""Simulated studies: the tidy runs frame of a study whose gains follow planted effects, no training.

    runs = simulate_runs(seed=0, domain_effect=0.05)

Used to validate the analysis (does it recover a planted effect, and find
nothing when nothing is planted?) and to benchmark it at scale. The relative
gain of a transfer is `domain_effect * same_domain + task_effect *
same_task + size_effect * source_larger + N(0, noise)`; baselines scatter
around 0.5, scratch runs are 20% worse than their baseline, and the trivial
predictor (`reference`) half as good. `weak_target` ("dataset/task", e.g.
"dri0/depth") names a target whose baselines lose to their reference (10%
worse than it) at every size and seed, so its transfers are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import runs_frame

TASKS = {"segmentation": ("miou", "true"), "depth": ("abs_rel", "false")}


def simulate_runs(seed: int, domain_effect: float = 0.0, task_effect: float = 0.0, size_effect: float = 0.0,
                  domains: tuple[str, ...] = ("driving", "aerial", "underwater"), per_domain: int = 2,
                  sizes: tuple[int, ...] = (16, 64), seeds: int = 3, noise: float = 0.02,
                  weak_target: str | None = None) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    datasets = [(f"{d[:3]}{i}", d, 400 if i % 2 == 0 else 32) for d in domains for i in range(per_domain)]
    targets = [f"{ds}/{task}" for ds, *_ in datasets for task in TASKS]
    if weak_target is not None and weak_target not in targets:
        raise ValueError(f"weak_target {weak_target!r} is not a simulated target; pick one of {targets}")
    recs = []
    for ds, dom, _ in datasets:
        for task, (metric, hib) in TASKS.items():
            for size in sizes:
                for s in range(seeds):
                    common = {"study": "simulated", "target_dataset": ds, "target_domain": dom, "target_task": task,
                              "target_size": str(size), "seed": str(s), "init": "generic", "primary_metric": metric,
                              "higher_is_better": hib, "status": "FINISHED"}  # fmt: skip
                    base = 0.5 + rng.normal(0, 0.01)
                    recs.append(common | {"kind": "baseline", "job_key": f"b/{ds}/{task}/{size}/{s}",
                                          "metrics": {metric: base}})  # fmt: skip
                    worse = base * 0.8 if hib == "true" else base * 1.25
                    trivial = base * 0.5 if hib == "true" else base * 2.0
                    if weak_target == f"{ds}/{task}":
                        trivial = base / 0.9 if hib == "true" else base * 0.9
                    recs.append(common | {"kind": "reference", "job_key": f"r/{ds}/{task}/{size}/{s}",
                                          "source_dataset": "none", "source_domain": "none", "source_task": "none",
                                          "multi_source": "false", "metrics": {metric: trivial}})  # fmt: skip
                    recs.append(common | {"kind": "scratch", "init": "scratch", "job_key": f"s/{ds}/{task}/{size}/{s}",
                                          "metrics": {metric: worse}})  # fmt: skip
                    for sds, sdom, ssize in datasets:
                        for stask in TASKS:
                            if (sds, stask) == (ds, task):
                                continue
                            gain = (domain_effect * (sdom == dom) + task_effect * (stask == task)
                                    + size_effect * (ssize > size) + rng.normal(0, noise))  # fmt: skip
                            value = base * (1 + gain) if hib == "true" else base * (1 - gain)
                            recs.append(common | {
                                "kind": "transfer", "job_key": f"t/{sds}/{stask}/{ds}/{task}/{size}/{s}",
                                "source_dataset": sds, "source_domain": sdom, "source_task": stask,
                                "source_size": str(ssize), "source_domains": sdom, "multi_source": "false",
                                "metrics": {metric: value},
                            })  # fmt: skip
    return runs_frame(recs)
