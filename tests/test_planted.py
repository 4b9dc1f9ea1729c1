"""Validation of the analysis on real trained studies: a planted domain distance is found, none is not.

The domain-blend knob renders the same kind of scenes with their look moved
towards another domain's. Sources and targets are driving datasets, half of
each plain and half with the underwater look blended in (a domain of its own),
so that "same domain" is a property of the (source, target) pair: the analysis
tests it among the sources of each target, with every source's quality and
every target's level removed, and the arrangements of its labels number in the
hundreds of thousands. (With plain targets only, "same domain" would be a
property of the source: 6 sources split 3 and 3 give 20 arrangements, and no
test at the level of sources can go below p = 0.1.) With the look fully
blended, the analysis must find that same-domain sources help more
(p < 0.01); with a blend fraction of 0 nothing is planted, and it must find
no effect at the 5% level in most repetitions.
"""

from conftest import run_tmx

from analysis.factors import factor_tests
from analysis.load import load_runs
from analysis.report import analyse


def planted_study(name: str, fraction: float, seeds: list[int], data_seed: int = 0, pairs: int = 3,
                  source_steps: int = 80, targets: int = 2) -> str:  # fmt: skip
    """`pairs` plain and `pairs` blended sources; `targets` plain and `targets` blended targets."""
    blend = f"blend: {{domain: underwater, fraction: {fraction}}}"
    lines = [f"name: {name}", "image_size: 32", "init: scratch", "tasks: [segmentation]", "datasets:"]
    for t in range(targets):
        target = f"role: target, train: 16, val: 32, seed: {data_seed}"
        lines.append(f"  - {{name: target{t}, domain: driving, {target}}}")
        lines.append(f"  - {{name: blended{t}, domain: driving, {target}, {blend}}}")
    for i in range(pairs):
        lines.append(f"  - {{name: near{i}, domain: driving, role: source, train: 96, seed: {data_seed}}}")
        lines.append(f"  - {{name: far{i}, domain: driving, role: source, train: 96, seed: {data_seed}, {blend}}}")
    lines += ["target_sizes: [16]", f"seeds: {seeds}", f"source: {{steps: {source_steps}, lr: 2.0e-3}}",
              "finetune: {steps: 30, batch_size: 8}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def domain_factor(tmp_path, name: str, fraction: float, seeds: list[int], data_seed: int = 0, pairs: int = 3,
                  source_steps: int = 80, targets: int = 2):  # fmt: skip
    """Run the study with `tmx run` (local Ray, sqlite MLflow) and return its same-domain factor row."""
    (tmp_path / f"{name}.yaml").write_text(planted_study(name, fraction, seeds, data_seed, pairs, source_steps,
                                                         targets))  # fmt: skip
    result = run_tmx("run", f"{name}.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = load_runs(f"sqlite:///{tmp_path / 'outputs' / name / 'mlflow.db'}", name)
    # every transfer: a target whose short scratch baseline loses to the trivial predictor is left out of the
    # report's statistics, but the planted (or absent) domain effect is in its transfers all the same
    analysis = analyse(runs, n_boot=200)
    assert set(analysis.gains["source_domain"]) == {"driving", f"driving+underwater@{fraction:g}"}
    return factor_tests(analysis.gains).set_index("factor").loc["same_domain"]


def test_planted_domain_distance_is_recovered(tmp_path):
    row = domain_factor(tmp_path, "planted", 1.0, [0, 1])
    assert row["n_yes"] == row["n_no"] == 3 * 4 * 2  # 3 same-domain sources for each of 4 targets, 2 seeds
    assert row["unit"] == "pairs within targets" and row["n_units"] == 6 * 4
    assert row["min_p"] < 0.001  # 20^4 arrangements: the design can show it
    assert row["effect"] > 0, row.to_dict()
    assert row["p"] < 0.01, row.to_dict()


def test_nothing_planted_nothing_found_in_most_repetitions(tmp_path):
    ps = []
    for data_seed in (1, 2, 3):  # 2 plain + 2 blended-by-0 sources onto 2 plain + 2 blended-by-0 targets
        # the two groups are exchangeable whatever the sources learn: shorter source training serves as well
        row = domain_factor(tmp_path, f"null{data_seed}", 0.0, [0], data_seed, pairs=2, source_steps=40)
        assert row["n_yes"] == row["n_no"] == 2 * 4
        assert row["min_p"] < 0.01  # 6^4 arrangements: a false positive is possible, so the test can fail
        ps.append(row["p"])
    assert sum(p < 0.05 for p in ps) <= 1, ps
