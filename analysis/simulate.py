"""Simulated studies: the tidy runs frame of a study whose gains follow planted effects, no training.

    runs = simulate_runs(seed=0, domain_effect=0.05)
    runs = simulate_runs(seed=0, source_sd=0.05, baseline_sd=0.03)   # a null study with a study's structure
    gains = simulate_gains(seed=0, source_sd=0.05)                    # its transfers' gains, without the runs

Used to validate the analysis (does it recover a planted effect, and find
nothing when nothing is planted?), to estimate the power of a design
(`analysis.power`) and to benchmark the analysis at scale. Datasets alternate
400 and 32 training images, `per_domain` in each domain, each a source and a
target for every task type. The relative gain of a transfer is

    domain_effect * same_domain + task_effect * same_task + size_effect * source_larger
    + small_effect * small_target + multi_effect * multi_source
    + a[source] + b[target] + c[source, target] + N(0, noise)

with a, b and c drawn once per study from N(0, source_sd), N(0, target_sd)
and N(0, pair_sd): every transfer from one source shares its quality, every
transfer onto one target its level. Baselines scatter around 0.5, and each is
measured with a relative error N(0, baseline_sd) that every transfer compared
with it shares (its gain is measured against it). Scratch runs are 20% worse
than their baseline, and the trivial predictor (`reference`) half as good.
`weak_target` ("dataset/task", e.g. "dri0/depth") names a target whose
baselines lose to their reference (10% worse than it) at every size and seed,
so its transfers are left out. `multi_source` names datasets whose sources
are multi-source instead: trained on their own domain and the next one
(domain "mixed").

`simulate_gains` gives what `add_factors(transfer_gains(simulate_runs(...)))`
gives for the same arguments, from the same draws, ten times faster: for
studies simulated by the hundred (tests/test_calibration.py, analysis.power).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.load import TAGS

TASKS = {"segmentation": ("miou", "true"), "depth": ("abs_rel", "false")}


@dataclass(frozen=True)
class _Study:
    """Every number of one simulated study, one row per target block (dataset, task, size, seed)."""

    blocks: pd.DataFrame  # target_dataset, target_domain, target_task, target_size, seed, metric, hib, base, measured
    sources: pd.DataFrame  # source_dataset, source_domain, source_task, source_size, source_domains, multi_source
    pick: np.ndarray  # [blocks, k]: the source row of each of a block's k transfers
    gain: np.ndarray  # [blocks, k]: each transfer's true relative gain over the true baseline
    trivial: np.ndarray  # [blocks]: the reference's metric


def _study(seed: int, domain_effect: float, task_effect: float, size_effect: float, domains: tuple[str, ...],
           per_domain: int, sizes: tuple[int, ...], seeds: int, noise: float, weak_target: str | None,
           source_sd: float, target_sd: float, pair_sd: float, baseline_sd: float, small_effect: float,
           multi_effect: float, multi_source: tuple[str, ...]) -> _Study:  # fmt: skip
    datasets = [(f"{d[:3]}{i}", d, 400 if i % 2 == 0 else 32) for d in domains for i in range(per_domain)]
    names = [ds for ds, *_ in datasets]
    pairs = [(ds, dom, size, task) for ds, dom, size in datasets for task in TASKS]  # every (dataset, task)
    targets = [f"{ds}/{task}" for ds, _, _, task in pairs]
    if weak_target is not None and weak_target not in targets:
        raise ValueError(f"weak_target {weak_target!r} is not a simulated target; pick one of {targets}")
    unknown = sorted(set(multi_source) - set(names))
    if unknown:
        raise ValueError(f"multi_source {unknown} are not simulated datasets; pick from {names}")
    following = {d: domains[(i + 1) % len(domains)] for i, d in enumerate(domains)}
    multi = np.array([ds in multi_source for ds, *_ in pairs])
    sources = pd.DataFrame({
        "source_dataset": [ds for ds, *_ in pairs],
        "source_domain": np.where(multi, "mixed", [dom for _, dom, _, _ in pairs]),
        "source_task": [task for *_, task in pairs], "source_size": [str(size) for _, _, size, _ in pairs],
        "source_domains": [f"{dom},{following[dom]}" if m else dom
                           for (_, dom, _, _), m in zip(pairs, multi, strict=True)],
        "multi_source": np.where(multi, "true", "false"),
    })  # fmt: skip
    P = len(pairs)
    # the study's structure, from its own stream (source qualities, target levels, pair effects, then baseline
    # errors, each drawn only when its sd is not 0): with every sd 0 the runs are what they always were
    structure = np.random.default_rng((seed, 1))
    quality = structure.normal(0, source_sd, P) if source_sd else np.zeros(P)
    level = structure.normal(0, target_sd, P) if target_sd else np.zeros(P)
    pair = structure.normal(0, pair_sd, (P, P)) if pair_sd else np.zeros((P, P))
    # blocks in the order (dataset, task, size, seed); per block one baseline draw, then one per transfer
    t_idx = np.repeat(np.arange(P), len(sizes) * seeds)
    size = np.tile(np.repeat(np.asarray(sizes), seeds), P)
    B, k = len(t_idx), P - 1
    z = np.random.default_rng(seed).standard_normal((B, 1 + k))
    base = 0.5 + 0.01 * z[:, 0]
    pick = np.array([[s for s in range(P) if s != t] for t in range(P)])[t_idx]  # [B, k]
    hib = np.array([TASKS[task][1] == "true" for *_, task in pairs])[t_idx]
    dom = np.array([d for _, d, _, _ in pairs])
    task = np.array([tk for *_, tk in pairs])
    ssize = np.array([s for _, _, s, _ in pairs])
    gain = (domain_effect * (np.asarray(sources["source_domain"])[pick] == dom[t_idx, None])
            + task_effect * (task[pick] == task[t_idx, None]) + size_effect * (ssize[pick] > size[:, None])
            + small_effect * ((size == min(sizes)) & (min(sizes) < max(sizes)))[:, None]
            + multi_effect * multi[pick] + quality[pick] + level[t_idx, None] + pair[pick, t_idx[:, None]]
            + noise * z[:, 1:])  # fmt: skip
    error = structure.normal(0, baseline_sd, B) if baseline_sd else np.zeros(B)
    measured = np.where(hib, base * (1 + error), base * (1 - error))
    trivial = np.where(hib, base * 0.5, base * 2.0)
    if weak_target is not None:
        weak = np.asarray(targets)[t_idx] == weak_target
        trivial = np.where(weak, np.where(hib, base / 0.9, base * 0.9), trivial)
    blocks = pd.DataFrame({
        "target_dataset": [pairs[t][0] for t in t_idx], "target_domain": dom[t_idx], "target_task": task[t_idx],
        "target_size": size, "seed": np.tile(np.arange(seeds), P * len(sizes)),
        "metric": [TASKS[tk][0] for tk in task[t_idx]], "hib": hib, "base": base, "measured": measured,
    })  # fmt: skip
    return _Study(blocks, sources, pick, gain, trivial)


def _defaults(**kw) -> dict:
    return {"domain_effect": 0.0, "task_effect": 0.0, "size_effect": 0.0,
            "domains": ("driving", "aerial", "underwater"), "per_domain": 2, "sizes": (16, 64), "seeds": 3,
            "noise": 0.02, "weak_target": None, "source_sd": 0.0, "target_sd": 0.0, "pair_sd": 0.0,
            "baseline_sd": 0.0, "small_effect": 0.0, "multi_effect": 0.0, "multi_source": ()} | kw  # fmt: skip


def simulate_runs(seed: int, domain_effect: float = 0.0, task_effect: float = 0.0, size_effect: float = 0.0,
                  domains: tuple[str, ...] = ("driving", "aerial", "underwater"), per_domain: int = 2,
                  sizes: tuple[int, ...] = (16, 64), seeds: int = 3, noise: float = 0.02,
                  weak_target: str | None = None, source_sd: float = 0.0, target_sd: float = 0.0,
                  pair_sd: float = 0.0, baseline_sd: float = 0.0, small_effect: float = 0.0,
                  multi_effect: float = 0.0, multi_source: tuple[str, ...] = ()) -> pd.DataFrame:  # fmt: skip
    """The tidy runs frame (`analysis.load.runs_frame`'s columns) of one simulated study (see the module)."""
    st = _study(seed, domain_effect, task_effect, size_effect, tuple(domains), per_domain, tuple(sizes), seeds, noise,
                weak_target, source_sd, target_sd, pair_sd, baseline_sd, small_effect, multi_effect,
                tuple(multi_source))  # fmt: skip
    b, (B, k) = st.blocks, st.pick.shape
    key = (b["target_dataset"] + "/" + b["target_task"] + "/" + b["target_size"].astype(str) + "/"
           + b["seed"].astype(str))  # fmt: skip
    hib, base = b["hib"].to_numpy(), b["base"].to_numpy()
    value = np.where(hib[:, None], base[:, None] * (1 + st.gain), base[:, None] * (1 - st.gain))
    per_block = {  # [B, 3 + k]: baseline, reference, scratch, then the transfers
        "kind": np.array(["baseline", "reference", "scratch", *["transfer"] * k], object)[None, :].repeat(B, 0),
        "value": np.column_stack([b["measured"], st.trivial, np.where(hib, base * 0.8, base * 1.25), value]),
    }
    rows = B * (3 + k)
    block = np.repeat(np.arange(B), 3 + k)
    src = np.column_stack([np.full((B, 3), -1), st.pick]).ravel()
    is_t = src >= 0
    out = {c: np.full(rows, None, object) for c in TAGS}
    out["study"][:] = "simulated"
    out["kind"] = per_block["kind"].ravel()
    for c in ("target_dataset", "target_domain", "target_task"):
        out[c] = b[c].to_numpy(object)[block]
    out["target_size"] = b["target_size"].astype(str).to_numpy(object)[block]
    out["seed"] = b["seed"].astype(str).to_numpy(object)[block]
    out["init"] = np.where(out["kind"] == "scratch", "scratch", "generic").astype(object)
    out["primary_metric"] = b["metric"].to_numpy(object)[block]
    out["higher_is_better"] = hib[block]
    for c in st.sources.columns:
        out[c][is_t] = st.sources[c].to_numpy(object)[src[is_t]]
    ref = out["kind"] == "reference"
    out["source_dataset"][ref] = out["source_domain"][ref] = out["source_task"][ref] = "none"
    out["multi_source"][ref] = "false"
    prefix = np.array(["b/", "r/", "s/"], object)
    names = (st.sources["source_dataset"] + "/" + st.sources["source_task"] + "/").to_numpy(object)
    first = np.where(is_t, "t/" + names[np.maximum(src, 0)], prefix[np.minimum(np.tile(np.arange(3 + k), B), 2)])
    out["job_key"] = first + key.to_numpy(object)[block]
    df = pd.DataFrame(out)
    df["status"] = "FINISHED"
    df["error"] = df["name"] = None
    df["value"] = per_block["value"].ravel()
    for m in ("miou", "abs_rel"):
        df[f"metric.{m}"] = np.where(df["primary_metric"] == m, df["value"], np.nan)
    df["target_size"] = pd.to_numeric(df["target_size"]).astype("Int64")
    df["seed"] = pd.to_numeric(df["seed"]).astype("Int64")
    return df


def simulate_gains(seed: int, **kwargs) -> pd.DataFrame:
    """`add_factors(transfer_gains(simulate_runs(seed, **kwargs)))`, computed from the same draws directly."""
    from analysis.factors import add_factors

    a = _defaults(**kwargs)
    st = _study(seed, **{k: tuple(v) if isinstance(v, list) else v for k, v in a.items()})
    b, (B, k) = st.blocks, st.pick.shape
    hib, base, measured = b["hib"].to_numpy(), b["base"].to_numpy(), b["measured"].to_numpy()
    value = np.where(hib[:, None], base[:, None] * (1 + st.gain), base[:, None] * (1 - st.gain))
    sign = np.where(hib, 1.0, -1.0)[:, None]
    abs_gain = sign * (value - measured[:, None])
    block = np.repeat(np.arange(B), k)
    out = st.sources.iloc[st.pick.ravel()].reset_index(drop=True)
    for c in ("target_dataset", "target_domain", "target_task"):
        out[c] = b[c].to_numpy()[block]
    for c in ("target_size", "seed"):
        out[c] = pd.array(b[c].to_numpy()[block], "Int64")
    out["source"] = out["source_dataset"] + "/" + out["source_task"]
    out["target"] = out["target_dataset"] + "/" + out["target_task"]
    out["init"] = "generic"
    out["primary_metric"] = b["metric"].to_numpy()[block]
    out["higher_is_better"] = hib[block]
    out["value"], out["baseline"] = value.ravel(), measured[block]
    out["abs_gain"] = abs_gain.ravel()
    out["gain"] = (abs_gain / np.abs(measured)[:, None]).ravel()
    return add_factors(out)
