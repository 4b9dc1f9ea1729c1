from conftest import REPO

from matrix.plan import count_by_kind, plan
from matrix.spec import load_study, parse_study

BASE = {
    "name": "p",
    "datasets": [{"name": "a", "domain": "driving"}, {"name": "b", "domain": "aerial"},
                 {"name": "c", "domain": "underwater", "tasks": ["depth"]}],
    "target_sizes": [16, 64],
    "seeds": [0, 1],
}  # fmt: skip


def _plan(**changes):
    return plan(parse_study(BASE | changes, "test"))


def test_job_counts_and_order():
    jobs = _plan()
    pairs = 5  # a, b with two tasks each; c with depth only
    assert count_by_kind(jobs) == {"pretrain": 1, "source": pairs, "transfer": 2 * 2 * pairs * (pairs - 1),
                                   "baseline": 2 * 2 * pairs, "scratch": 2 * 2 * pairs}  # fmt: skip
    position = {j.key: i for i, j in enumerate(jobs)}
    assert len(position) == len(jobs)  # keys are unique
    for job in jobs:
        if job.upstream:
            assert position[job.upstream] < position[job.key]
    for job in jobs:
        if job.kind == "transfer":
            assert (job.source.dataset, job.source.task) != (job.train.dataset, job.task)
        if job.kind == "scratch":
            assert job.upstream is None and job.init == "scratch"


def test_demo_plan():
    jobs = plan(load_study(REPO / "configs" / "demo.yaml"))
    assert count_by_kind(jobs) == {"pretrain": 1, "source": 8, "transfer": 56, "baseline": 8, "scratch": 8}


def test_keys_are_stable_and_follow_upstream():
    a, b = _plan(), _plan()
    assert [j.key for j in a] == [j.key for j in b]
    changed = _plan(source={"steps": 99})
    before = {j.name: j.key for j in a}
    after = {j.name: j.key for j in changed}
    for name in before:
        if name.startswith(("source", "transfer")):
            assert before[name] != after[name], name  # source changed, so did every transfer on it
        else:
            assert before[name] == after[name], name  # pretrain and baselines untouched


def test_scratch_init_has_no_pretrain_and_tags_name_everything():
    jobs = _plan(init="scratch")
    assert "pretrain" not in count_by_kind(jobs) and "scratch" not in count_by_kind(jobs)
    transfer = next(j for j in jobs if j.kind == "transfer")
    tags = transfer.tags("p")
    for key in ("study", "kind", "job_key", "source_dataset", "source_domain", "source_task", "target_dataset",
                "target_domain", "target_task", "target_size", "seed", "init", "source_size", "source_domains"):  # fmt: skip
        assert tags[key] not in ("", None), key
    assert tags["init"] == "scratch" and tags["job_key"] == transfer.key


def test_plan_cli_estimates_cost_from_the_study(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from matrix.cli import main

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndatasets:\n  - {name: a, domain: driving}\n  - {name: b, domain: aerial}\n"
                    "estimates: {source: 0.5, transfer: 0.25}\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "source         4        2.00 h  (1800 s each, the study's estimates)" in result.output
    assert "transfer      12        3.00 h" in result.output
    assert "baseline       4   (no estimate: add estimates.baseline" in result.output
    assert "estimated total: 5.00 device-hours" in result.output
    assert not (tmp_path / "outputs").exists()  # planning writes nothing
