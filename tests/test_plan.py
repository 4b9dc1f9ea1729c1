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
                                   "baseline": 2 * 2 * pairs, "scratch": 2 * 2 * pairs,
                                   "reference": 2 * 2 * pairs}  # fmt: skip
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
    assert count_by_kind(jobs) == {"pretrain": 1, "source": 7, "transfer": 63, "baseline": 10, "scratch": 10,
                                   "reference": 10}  # fmt: skip
    assert {j.task for j in jobs if j.kind == "baseline"} == {"segmentation", "depth", "detection", "keypoints"}


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
                "target_domain", "target_task", "target_size", "seed", "init", "source_size", "source_domains",
                "source_datasets", "multi_source"):  # fmt: skip
        assert tags[key] not in ("", None), key
    assert tags["init"] == "scratch" and tags["job_key"] == transfer.key
    assert tags["multi_source"] == "false" and tags["source_datasets"] == transfer.source.dataset


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
    # a budgeted sweep: a proxy job per transfer (the defaults: the study names no `proxies:`), a third of them run
    budgeted = CliRunner().invoke(main, ["plan", str(path), "--budget", "0.34"])
    assert budgeted.exit_code == 0, budgeted.output
    assert "s: 33 jobs (a budgeted sweep: 4 of the 12 planned transfers)" in budgeted.output  # 1 + 4 + 4 x 3 + 12 + 4
    assert "transfer       4        1.00 h" in budgeted.output and "proxy         12" in budgeted.output
    tiny = CliRunner().invoke(main, ["plan", str(path), "--budget", "0.05"])
    assert tiny.exit_code == 2 and "--budget 0.05: " in tiny.output and "less than one pair" in tiny.output


# -- multi-source sources ------------------------------------------------------------------------------

MULTI = {"name": "mix", "datasets": {"a": 3, "c": 1}}  # driving + underwater; c is used for depth only


def _multi(weights=None, **changes):
    return _plan(multi_sources=[MULTI | ({"datasets": weights} if weights else {})], **changes)


def test_a_multi_source_is_one_source_job_per_shared_task_on_its_datasets_train_splits():
    jobs = _multi()
    mixed = [j for j in jobs if j.kind == "source" and j.source.dataset == "mix"]
    assert [j.task for j in mixed] == ["depth"]  # the study's task types both a and c are used for
    job = mixed[0]
    assert job.name == "source mix/depth (a 75% + c 25%)" and job.upstream == jobs[0].key  # from the pretrain
    assert [(ref.dataset, ref.split, ref.count, weight) for ref, weight in job.train.parts] == [
        ("a", "train", 400, 0.75), ("c", "train", 400, 0.25)]  # whole train splits; weights normalised
    assert job.train.count == 800 and job.train.subset_seed == 0  # the source seed draws its table
    assert [(ref.dataset, ref.split, ref.count, weight) for ref, weight in job.eval.parts] == [
        ("a", "val", 64, 0.5), ("c", "val", 64, 0.5)]  # every val sample once: weights follow the sizes
    assert next(j for j in _multi(source_seed=7) if j.name == job.name).train.subset_seed == 7


def test_multi_source_tags_name_its_datasets_and_domains():
    jobs = _multi()
    job = next(j for j in jobs if j.kind == "source" and j.source.dataset == "mix")
    tags = job.tags("p")
    assert {k: tags[k] for k in ("source_dataset", "source_task", "source_size", "source_domain", "source_domains",
                                 "source_datasets", "multi_source", "target_dataset", "target_domain")} == {
        "source_dataset": "mix", "source_task": "depth", "source_size": "800", "source_domain": "mixed",
        "source_domains": "driving,underwater", "source_datasets": "a,c", "multi_source": "true",
        "target_dataset": "mix", "target_domain": "mixed"}  # fmt: skip
    transfer = next(j for j in jobs if j.kind == "transfer" and j.source.dataset == "mix")
    assert {k: transfer.tags("p")[k] for k in tags if k.startswith("source_") or k == "multi_source"} == {
        k: tags[k] for k in tags if k.startswith("source_") or k == "multi_source"}  # fmt: skip
    single = next(j for j in jobs if j.kind == "transfer" and j.source.dataset == "a")
    assert single.tags("p")["multi_source"] == "false" and single.tags("p")["source_domains"] == "driving"
    # parts of one domain: the multi-source is of that domain, and still multi-source
    same = _plan(datasets=[*BASE["datasets"], {"name": "d", "domain": "driving"}],
                 multi_sources=[{"name": "drive", "datasets": ["a", "d"]}])  # fmt: skip
    tags = next(j for j in same if j.kind == "source" and j.source.dataset == "drive").tags("p")
    assert (tags["source_domain"], tags["source_domains"], tags["multi_source"]) == ("driving", "driving", "true")


def test_a_multi_source_never_transfers_onto_its_own_datasets_with_the_same_task():
    jobs = _multi()
    onto = {(j.train.dataset, j.task) for j in jobs if j.kind == "transfer" and j.source.dataset == "mix"}
    # targets: a, b (segmentation, depth), c (depth); mix/depth has seen a/depth and c/depth
    assert onto == {("a", "segmentation"), ("b", "segmentation"), ("b", "depth")}
    per_target = 2 * 2  # sizes x seeds
    single = 2 * 2 * 5 * 4
    assert count_by_kind(jobs)["transfer"] == single + len(onto) * per_target
    assert count_by_kind(jobs)["source"] == 5 + 1
    position = {j.key: i for i, j in enumerate(jobs)}
    assert all(position[j.upstream] < position[j.key] for j in jobs if j.upstream)


def test_multi_source_keys_are_stable_and_follow_the_weights():
    def keys(jobs):
        return {j.name.split(" (")[0]: j.key for j in jobs}

    a, b = keys(_multi()), keys(_multi())
    assert a == b
    reweighted = keys(_multi({"a": 1, "c": 1}))
    for name in a:
        if "mix/" in name:
            assert a[name] != reweighted[name], name  # the source and every transfer from it
        else:
            assert a[name] == reweighted[name], name
    assert keys(_multi({"a": 6, "c": 2})) == a  # weights are normalised: the same mixture, the same keys
    assert keys(_plan()) == {n: k for n, k in a.items() if "mix/" not in n}  # adding one changes no other job


def test_multi_source_keys_leave_out_where_the_catalog_is_but_not_what_it_says(tmp_path):
    entry = "datasets:\n  proc: {domain: aerial, procedural: {}, splits: {train: {size: 80}, val: {size: SIZE}}}\n"
    study = {"name": "p", "catalog": "catalog.yaml",
             "datasets": [{"catalog": "proc"}, {"name": "a", "domain": "driving"}],
             "multi_sources": [{"name": "mix", "datasets": ["proc", "a"]}]}  # fmt: skip

    def mixed(folder: str, val: int) -> dict[str, tuple[str, str]]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "catalog.yaml").write_text(entry.replace("SIZE", str(val)))
        jobs = plan(parse_study(study, str(tmp_path / folder / "s.yaml")))
        return {j.name: (j.key, j.train.parts[0][0].catalog_file) for j in jobs if j.kind == "source" and j.train.parts}

    here, moved, edited = mixed("one", 16), mixed("two", 16), mixed("three", 24)
    assert here and here.keys() == moved.keys() == edited.keys()
    for name, (key, catalog_file) in here.items():
        assert moved[name][0] == key and moved[name][1] != catalog_file  # a moved catalog keeps the keys
        assert edited[name][0] != key  # an edited entry changes them
