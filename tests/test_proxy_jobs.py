"""Proxy jobs (`proxies:` in a study): the source's frozen backbone scored on each transfer's target subset, run on
real local Ray, logged to MLflow like any job, joined with the measured gains, ranked and replayed."""

from __future__ import annotations

import json
import math

import pandas as pd
from conftest import run_tmx

from analysis.gains import baseline_check, mark_gains, transfer_gains
from analysis.load import load_runs
from analysis.policy import run_policy
from analysis.proxy_quality import pairs_table, proxy_quality, proxy_table
from matrix.plan import plan
from matrix.spec import load_study
from matrix.tracking import describe

# two driving targets (one also a source), a driving, an underwater and an aerial source
STUDY = """\
name: prox
image_size: 32
init: scratch
scratch: false
tasks: [segmentation]
datasets:
  - {name: city, domain: driving, role: source, train: 48, val: 8}
  - {name: reef, domain: underwater, role: source, train: 48, val: 8}
  - {name: fields, domain: aerial, role: source, train: 48, val: 8}
  - {name: town, domain: driving, role: target, train: 16, val: 16}
  - {name: road, domain: driving, train: 16, val: 16}
target_sizes: [16]
seeds: [0]
source: {steps: 30, batch_size: 8}
finetune: {steps: 40, batch_size: 8}
proxies: {samples: 256, images: 16}
"""


def _replayed_by_the_policy(uri: str, budget: float, known: list) -> list[tuple[str, str]]:
    """The transfers a budgeted sweep measured, checked against the policy replayed offline on the report's table
    of the same runs: given the `known` pairs (measured by an earlier sweep), the policy, revealing the measured
    values, picks exactly the others (a pair it picks that the sweep did not measure has no value: KeyError)."""
    runs = load_runs(uri, "prox")
    table = pairs_table(runs, transfer_gains(runs))
    ran = runs[(runs["kind"] == "transfer") & (runs["status"] == "FINISHED")].sort_values("name")
    values = table.dropna(subset=["value"]).set_index(["target", "source"])["value"].to_dict()
    assert len(values) == len(ran)
    order = run_policy(table.drop(columns="value"), lambda pairs: [values[p] for p in pairs], budget,
                       known={pair: values[pair] for pair in known}).order
    assert set(zip(order["target"], order["source"])) == set(values)
    return list(values)


def test_proxy_jobs_score_every_transfer(tmp_path):
    (tmp_path / "prox.yaml").write_text(STUDY)
    jobs = plan(load_study(tmp_path / "prox.yaml"))
    transfers = {(j.source.dataset, j.train.dataset, j.seed) for j in jobs if j.kind == "transfer"}
    proxies = [j for j in jobs if j.kind == "proxy"]
    assert {(j.source.dataset, j.train.dataset, j.seed) for j in proxies} == transfers and len(transfers) == 7
    uri = f"sqlite:///{tmp_path / 'outputs' / 'prox' / 'mlflow.db'}"
    # a budgeted sweep first (on Ray): every job but the transfers, then floor(0.3 x 7) = 2 transfers, each
    # target's best by its proxies; then a larger budget (in-process) runs floor(0.6 x 7) - 2 more, by the model
    first = run_tmx("run", "prox.yaml", "--max-parallel", "2", "--budget", "0.3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "7 proxy" in first.stdout and "2 transfer" in first.stdout  # finished, per kind
    assert "Budget 0.3: 2 of 7 transfers measured (0 already, 2 chosen by the proxies, 0 by the model)" in first.stdout
    measured = _replayed_by_the_policy(uri, 0.3, known=[])
    assert len(measured) == 2 and {t for t, _ in measured} == {"town/segmentation n=16 seed=0",
                                                                "road/segmentation n=16 seed=0"}  # fmt: skip
    report = run_tmx("report", "prox.yaml", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "0 missing jobs" in report.stdout and "2 of 7 transfers measured and 5 predicted" in report.stdout
    predicted = pd.read_csv(tmp_path / "outputs" / "prox" / "predicted.csv")
    assert len(predicted) == 7 and predicted["measured"].sum() == 2
    unrun = predicted[~predicted["measured"]]
    assert ((unrun["lower"] < unrun["mean"]) & (unrun["mean"] < unrun["upper"])).all()
    assert "~" in (tmp_path / "outputs" / "prox" / "report.md").read_text().split("measured and predicted transfers")[1]
    more = run_tmx("run", "prox.yaml", "--in-process", "--budget", "0.6", cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "Budget 0.6: 4 of 7 transfers measured (2 already, 0 chosen by the proxies, 2 by the model)" in more.stdout
    assert "finished 2 transfer" in more.stdout
    assert set(_replayed_by_the_policy(uri, 0.6, known=measured)) > set(measured)
    swept = json.loads(run_tmx("status", "prox.yaml", "--json", cwd=tmp_path).stdout)
    assert swept["budget"] == 0.6 and {row["kind"]: row["done"] for row in swept["kinds"]}["transfer"] == 4

    done = run_tmx("run", "prox.yaml", "--max-parallel", "2", cwd=tmp_path)  # the full matrix: the other 3
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished 3 transfer" in done.stdout and "(19 were already done)" in done.stdout

    runs = load_runs(uri, "prox")
    ran = runs[runs["kind"] == "proxy"]
    assert len(ran) == 7 and (ran["status"] == "FINISHED").all()
    assert (ran["primary_metric"] == "logme").all() and ran["higher_is_better"].all()
    for name in ("logme", "gbc", "hscore", "hscore_shrunk", "domain_similarity"):
        assert ran[f"metric.{name}"].map(math.isfinite).all(), name
    assert (ran["metric.features"] >= 64).all()  # class-balanced pixels of the 16-image subsets
    assert "transferability proxies" in describe(proxies[0])

    # the label-free domain similarity: on every driving target, the driving source's images look more like the
    # target's than the underwater and aerial sources' do (each seen through the source's own backbone)
    sim = ran.set_index(["target_dataset", "seed", "source_dataset"])["metric.domain_similarity"]
    for target, seed in {(t, s) for t, s, _ in sim.index}:
        others = [sim[(target, seed, src)] for src in ("reef", "fields")]
        if (target, seed, "city") in sim.index:
            assert sim[(target, seed, "city")] > max(others), sim.loc[(target, seed)]

    # every transfer's gain beside its proxies (all of them here: in the report, only the transfers that count)
    table = proxy_table(runs, transfer_gains(runs))
    assert len(table) == 7 and table["value"].notna().all()
    assert table["target"].nunique() == 2 and set(table["task"]) == {"segmentation"}
    assert table.loc[table["source"] == "city/segmentation", "same_domain"].all()
    assert len(proxy_table(runs, mark_gains(transfer_gains(runs), baseline_check(runs)))) <= 7
    quality = proxy_quality(table, higher_is_better=True)
    rankers = {"logme", "gbc", "hscore", "hscore_shrunk", "domain_similarity", "combined", "popularity", "random"}
    assert set(quality.per_target["proxy"]) == rankers
    assert quality.per_target["kendall_tau"].dropna().between(-1, 1).all()
    assert set(quality.summary["n_targets"]) == {2}
    # the report ranks the proxies by the counted transfers' gains, and writes the table `tmx replay` reads
    report = run_tmx("report", "prox.yaml", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "7 counted" in report.stdout and "tmx replay outputs/prox/proxies.csv" in report.stdout
    out = tmp_path / "outputs" / "prox"
    assert "Transferability proxies: how well each ranks" in (out / "report.html").read_text()
    assert len(pd.read_csv(out / "proxies.csv")) == 7
    replayed = run_tmx("replay", "outputs/prox/proxies.csv", "--budget", "0.5", "--json", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    policies = json.loads(replayed.stdout)["policies"]
    assert set(policies) == {"budgeted", "random", "proxy_top_k"} and policies["budgeted"]["pairs_run"] <= 0.5

    status = run_tmx("status", "prox.yaml", "--json", cwd=tmp_path)
    kinds = {row["kind"]: row for row in json.loads(status.stdout)["kinds"]}
    assert kinds["proxy"]["planned"] == 7 and kinds["proxy"]["done"] == 7
    assert json.loads(status.stdout)["budget"] is None  # the full run planned every transfer
