"""Power before paying: simulated studies of a design, tested as the report tests them; `tmx plan --power`."""

import numpy as np
import pytest
from click.testing import CliRunner

from analysis.load import write_runs
from analysis.power import ASSUMED, Spread, components_from_runs, design_frame, power, units_for_power
from analysis.simulate import simulate_gains, simulate_runs
from matrix.cli import main
from matrix.plan import plan
from matrix.spec import parse_study

STUDY = ("name: s\ndatasets:\n  - {name: a, domain: driving}\n  - {name: b, domain: aerial}\n"
         "  - {name: c, domain: driving}\n")


def test_power_is_the_false_positive_rate_without_an_effect_and_grows_with_it():
    design = simulate_gains(0, seeds=2)  # its columns are a planned study's; the gains are redrawn
    runs = [power(design, ASSUMED, "same_domain", e, n_sims=100, n_perm=100) for e in (0.0, 0.01, 0.05)]
    assert runs[0]["unit"] == "pairs within targets" and runs[0]["n_units"] == 132
    assert runs[0]["power"] <= 0.1  # nothing planted: the test's false-positive rate
    assert runs[0]["power"] < runs[1]["power"] < runs[2]["power"] and runs[2]["power"] >= 0.9


def test_too_few_sources_have_no_power_and_more_sources_do():
    # 2 multi-source sources of 6: 15 arrangements, no test of a source-level factor can go below p = 1/15
    design = simulate_gains(0, per_domain=1, seeds=2, multi_source=("dri0",))
    few = power(design, ASSUMED, "multi_source", 0.2, n_sims=50, n_perm=100)
    assert few["unit"] == "sources" and few["n_units"] == 6 and few["min_p"] > 0.05 and few["power"] == 0.0
    more = units_for_power(design, ASSUMED, "multi_source", 0.2, n_sims=40, n_perm=100, times=(2, 4))
    assert more["sources"].startswith(("12 sources", "24 sources")), more  # more sources: power
    assert more["targets"].startswith("more than 24 targets (power 0.00)"), more  # more targets: none
    assert more["seeds"].startswith("more than 8 seeds (power 0.00)"), more


def test_the_spread_is_measured_on_a_pilot():
    runs = simulate_runs(1, source_sd=0.06, baseline_sd=0.02, per_domain=3, seeds=2)
    spread = components_from_runs(runs, "the pilot")
    structure = np.random.default_rng((1, 1))  # simulate's own stream: its 18 sources' qualities, then 72 baselines'
    quality, error = structure.normal(0, 0.06, 18), structure.normal(0, 0.02, 72)  # errors
    assert spread.source == pytest.approx(quality.std(ddof=1), rel=0.05)
    # with 4 baselines a target, REML gives part of their errors' spread to the targets (none planted)
    assert np.hypot(spread.target, spread.baseline) == pytest.approx(error.std(ddof=1), rel=0.05)
    assert spread.residual == pytest.approx(0.02, rel=0.05) and spread.pair < 0.005
    assert spread.origin == "measured on 1224 counted transfers of the pilot"
    one = (runs["target_dataset"] == "dri0") & (runs["target_task"] == "depth") & (runs["seed"] == 0)
    assert components_from_runs(runs[one & (runs["target_size"] == 16)], "too small") is None  # 17 transfers
    assert components_from_runs(runs[one], "enough") is not None  # 34
    # the power of a source-level factor follows the sources' spread
    design = simulate_gains(0, seeds=2, multi_source=("dri1", "und1"))
    quiet, loud = (power(design, replace, "multi_source", 0.05, n_sims=60, n_perm=100)["power"]
                   for replace in (Spread(0.01, 0, 0, 0.03, 0.02, ""), Spread(0.1, 0, 0, 0.03, 0.02, "")))  # fmt: skip
    assert quiet > 0.8 > 0.3 > loud


def test_the_design_is_the_planned_transfers():
    jobs = plan(parse_study({"name": "s", "datasets": [{"name": "a", "domain": "driving"},
                                                      {"name": "b", "domain": "aerial"}],
                             "target_sizes": [16, 64], "seeds": [0, 1]}, "test"))  # fmt: skip
    design = design_frame(jobs)
    transfers = [j for j in jobs if j.kind == "transfer"]
    assert len(design) == len(transfers) == 2 * 2 * 2 * 3 * 2  # 4 targets x 3 sources x 2 sizes x 2 seeds
    assert set(design["source"]) == {"a/segmentation", "a/depth", "b/segmentation", "b/depth"}
    assert design["same_domain"].sum() == 2 * 2 * 2 * 1 * 2  # a target's one same-domain source: its other task
    assert design["small_target"].sum() == len(design) / 2


def test_plan_power_prints_each_factor_and_what_reaches_80_percent(tmp_path, monkeypatch):
    (tmp_path / "s.yaml").write_text(STUDY)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plan", "s.yaml", "--power", "5%", "--sims", "20"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert ("power to detect an effect of 5.0% gain at p < 0.05 (before Holm's correction), 20 simulated studies "
            "of this design: 30 transfers from 6 sources onto 6 targets, 1 size, 1 seed") in out
    assert "(assumed: no finished runs to measure them on; pass --pilot)" in out
    lines = {line.split()[0]: line for line in out.splitlines()[-7:]}
    assert set(lines) == {"same_domain", "same_task", "includes_target_domain", "source_larger", "small_target",
                          "multi_source", "generic_init"}  # fmt: skip
    assert "pairs within targets" in lines["same_domain"]
    assert lines["small_target"].endswith("not testable: the design does not vary it")
    assert not (tmp_path / "outputs").exists()  # planning writes nothing

    runs = simulate_runs(1, source_sd=0.06, baseline_sd=0.02, seeds=2)
    write_runs(runs, tmp_path / "pilot.parquet")
    result = CliRunner().invoke(main, ["plan", "s.yaml", "--power", "0.1", "--pilot", "pilot.parquet", "--sims", "20"])
    assert result.exit_code == 0, result.output
    assert "counted transfers of the pilot runs pilot.parquet)" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--power", "abc"], "tmx: --power: 'abc' is not an effect size in gain between 0 and 1: pass e.g. --power 0.05"),
    (["--power", "0"], "tmx: --power: '0' is not an effect size in gain between 0 and 1"),
    (["--pilot", "p.yaml"], "tmx: --pilot: only with --power EFFECT"),
    (["--power", "0.05", "--pilot", "nowhere.yaml"], "tmx: nowhere.yaml:"),
    (["--power", "0.05", "--pilot", "s.yaml"], "tmx: s.yaml: no runs yet:"),
    (["--power", "0.05", "--pilot", "few.parquet"], "tmx: --pilot few.parquet: fewer than 30 counted transfers"),
])  # fmt: skip
def test_plan_power_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, args, message):
    (tmp_path / "s.yaml").write_text(STUDY)
    write_runs(simulate_runs(0, domains=("driving",), per_domain=1, sizes=(16,), seeds=1), tmp_path / "few.parquet")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plan", "s.yaml", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
