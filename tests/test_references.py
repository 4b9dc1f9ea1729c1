"""Baselines against their trivial predictor, and gains that cannot be computed, through the whole report.

Each test runs `analyse` and `write_report` on a simulated study and checks both the returned Analysis and
what report.md and report.html say. Expected numbers come from the simulated runs frame with plain pandas.
"""

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from analysis.findings import HELD, NOT_ENOUGH, NOT_HELD, NOT_TESTABLE
from analysis.report import analyse, write_report
from analysis.simulate import simulate_runs

WEAK = "dri0/depth"
BASELINES = "Baselines"
LEFT_OUT = "Targets left out (the baseline does not beat the trivial predictor)"
UNDEFINED = "Undefined gains"
FINDINGS = "Findings of Mensink et al. on this study"
FACTORS = "Factors of influence"
TOP = "Top three sources per target"
SINGLE_FACTORS = ("same_domain", "same_task", "includes_target_domain", "source_larger", "small_target")
NO_BASELINE = "no finished baseline of this target, size, seed and init"
ZERO_MIOU = "the baseline's miou is 0: a relative gain divides by it"


# -- reading the written report back ----------------------------------------------------------------


def _md_sections(text: str) -> dict[str, dict]:
    """report.md: section title -> {"text": the lines that are not table rows, "table": DataFrame of str or None}."""
    out = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title, body = part.split("\n", 1)
        rows = [[cell.replace("\\|", "|") for cell in line[2:-2].split(" | ")]
                for line in body.splitlines() if line.startswith("| ")]  # fmt: skip
        table = pd.DataFrame(rows[1:], columns=rows[0]) if rows else None
        prose = "\n".join(line for line in body.splitlines() if not line.startswith("|"))
        out[title] = {"text": prose, "table": table}
    return out


class _HtmlSections(HTMLParser):
    """report.html: section title (h2) -> {"text": its paragraphs, "tables": rows of cell texts per table}."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._title = None
        self._tag = None
        self._buf: list[str] = []
        self._row: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "p", "th", "td"):
            self._tag, self._buf = tag, []
        elif tag == "table" and self._title is not None:
            self.sections[self._title]["tables"].append([])
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "tr" and self._title is not None:
            self.sections[self._title]["tables"][-1].append(self._row)
        if tag != self._tag:
            return
        text, self._tag = "".join(self._buf).strip(), None
        if tag == "h2":
            self._title = text
            self.sections[text] = {"text": [], "tables": []}
        elif tag == "p" and self._title is not None:
            self.sections[self._title]["text"].append(text)
        elif tag in ("th", "td"):
            self._row.append(text)

    def handle_data(self, data):
        if self._tag is not None:
            self._buf.append(data)


def _report(paths: dict) -> dict[str, dict]:
    """Both report files, section by section; a section's table must read the same in report.md and report.html."""
    md = _md_sections(paths["md"].read_text())
    parser = _HtmlSections()
    parser.feed(paths["html"].read_text())
    html = parser.sections
    assert list(md) == list(html)
    for title, sec in md.items():
        tables = html[title]["tables"]
        if sec["table"] is None:
            assert tables == [], title
            continue
        assert len(tables) == 1, title
        got = pd.DataFrame(tables[0][1:], columns=tables[0][0])
        pd.testing.assert_frame_equal(got, sec["table"], obj=f"{title!r} in report.html vs report.md")
    for title, sec in md.items():
        sec["html_text"] = html[title]["text"]
    return md


def _analyse_and_write(runs: pd.DataFrame, tmp_path):
    a = analyse(runs, n_boot=200)
    paths = write_report(a, tmp_path / "report", "refs")
    for key in ("html", "md", "csv", "pairs"):
        assert paths[key].is_file()
    return a, paths, _report(paths)


def _none(sec: dict) -> bool:
    """An empty section: no table, and 'None.' in both files."""
    return sec["table"] is None and "None." in sec["text"] and "None." in sec["html_text"]


# -- the simulated frame, by hand ------------------------------------------------------------------------------


def _target(df: pd.DataFrame) -> pd.Series:
    return df["target_dataset"] + "/" + df["target_task"]


def _transfers(runs: pd.DataFrame) -> pd.DataFrame:
    tr = runs[runs["kind"] == "transfer"].copy()
    tr["target"] = _target(tr)
    tr["transfer"] = tr["source_dataset"] + "/" + tr["source_task"] + " -> " + tr["target"]
    return tr


def _n_pairs(tr: pd.DataFrame) -> int:
    return len(tr.drop_duplicates(["source_dataset", "source_task", "target_dataset", "target_task", "target_size",
                                   "init"]))  # fmt: skip


def _factor_counts(a, tr: pd.DataFrame) -> None:
    """The factor table counts exactly the transfers in `tr` (the ones that should count)."""
    f = a.factors.set_index("factor")
    for name in SINGLE_FACTORS:  # defined on every single-source transfer of a two-size study
        assert f.loc[name, "n_yes"] + f.loc[name, "n_no"] == len(tr), name
        assert f.loc[name, "testable"], name
        assert np.isfinite(f.loc[name, "effect"]), name
    assert f.loc["same_domain", "n_yes"] == (tr["source_domain"] == tr["target_domain"]).sum()
    assert f.loc["same_task", "n_yes"] == (tr["source_task"] == tr["target_task"]).sum()
    assert f.loc["small_target", "n_yes"] == (tr["target_size"] == tr["target_size"].min()).sum()
    assert set(a.model["n"]) == {len(tr)}


def _findings_ok(a, report) -> None:
    assert len(a.findings) == 10 and a.findings["finding"].is_unique
    assert set(a.findings["status"]) <= {HELD, NOT_HELD, NOT_ENOUGH, NOT_TESTABLE}
    table = report[FINDINGS]["table"]
    assert list(table["finding"]) == list(a.findings["finding"])
    assert list(table["status"]) == list(a.findings["status"])


# -- the tests ----------------------------------------------------------------------------------------------


def test_a_baseline_that_loses_to_its_reference_leaves_its_target_out(tmp_path):
    runs = simulate_runs(0, weak_target=WEAK)
    a, paths, report = _analyse_and_write(runs, tmp_path)

    tr = _transfers(runs)
    weak_tr, kept_tr = tr[tr["target"] == WEAK], tr[tr["target"] != WEAK]
    assert len(weak_tr) == 2 * 3 * 11  # 2 sizes x 3 seeds x 11 sources
    on_weak = runs[_target(runs) == WEAK]
    base = on_weak[on_weak["kind"] == "baseline"].groupby("target_size")["value"].mean()
    ref = on_weak[on_weak["kind"] == "reference"].groupby("target_size")["value"].mean()
    assert list(base.index) == [16, 64] and (base > ref).all()  # abs_rel, lower is better: the baseline loses
    reason = {s: f"baseline abs_rel {base[s]:.3g} does not beat the trivial predictor's {ref[s]:.3g} "
                 f"(lower is better)" for s in base.index}  # fmt: skip

    # the gains table keeps every transfer, marks the weak target's as left out, with the reason
    g = a.gains
    weak = g["target"] == WEAK
    assert len(g) == len(tr) and weak.sum() == len(weak_tr)
    assert not g.loc[weak, "included"].any() and g.loc[~weak, "included"].all()
    assert (~weak).sum() == len(kept_tr)
    assert (g.loc[weak, "excluded"] == g.loc[weak, "target_size"].map(reason)).all()
    assert g.loc[weak, "excluded"].str.contains("trivial predictor").all()
    assert (g.loc[~weak, "excluded"] == "").all()
    assert g.loc[weak, "beats_reference"].eq(False).all() and g.loc[~weak, "beats_reference"].eq(True).all()
    assert g.loc[weak, "gain"].notna().all()  # its gains are defined, just not counted
    assert a.undefined.empty

    # the statistics count only the kept transfers
    assert WEAK not in set(a.pairs["target"])
    assert len(a.pairs) == _n_pairs(kept_tr) == 11 * 2 * 11
    assert (a.pairs["n_seeds"] == 3).all()
    _factor_counts(a, kept_tr)
    _findings_ok(a, report)

    # the baseline check
    check = a.baselines
    flagged = _target(check) == WEAK
    assert flagged.sum() == 2 and check.loc[flagged, "beats_reference"].eq(False).all()
    assert check.loc[~flagged, "beats_reference"].eq(True).all()
    assert len(check) == len(runs.loc[runs["kind"] == "baseline", ["target_dataset", "target_task",
                                                                    "target_size"]].drop_duplicates())  # fmt: skip

    # report: each baseline beside its reference, with the flag
    table = report[BASELINES]["table"]
    assert len(table) == len(check)
    rows = table[(table["target_dataset"] + "/" + table["target_task"]) == WEAK]
    assert list(rows["target_size"]) == ["16", "64"]
    for row in rows.itertuples(index=False):
        s = int(row.target_size)
        assert (row.baseline, row.reference) == (f"{base[s]:.4g}", f"{ref[s]:.4g}")
        assert row.beats_reference == "NO: left out"
        assert row.reason == reason[s]
    others = table.drop(rows.index)
    assert (others["beats_reference"] == "yes").all() and (others["reference"] != "").all()
    assert others["reason"].str.contains(" beats the trivial predictor's ").all()
    assert "trivial predictor" in report[BASELINES]["text"] and "trivial predictor" in report[BASELINES]["html_text"][0]

    # report: the target left out, and why
    left = report[LEFT_OUT]["table"]
    assert left is not None and len(left) == 2
    assert set(left["target_dataset"] + "/" + left["target_task"]) == {WEAK}
    assert list(left["target_size"]) == ["16", "64"]
    per_size = weak_tr.groupby("target_size").size()
    assert list(left["transfers_left_out"]) == [str(per_size[16]), str(per_size[64])] == ["33", "33"]
    assert list(left["reason"]) == [reason[16], reason[64]]

    # nor is it among the best sources, or in pairs.csv
    assert WEAK not in set(report[TOP]["table"]["target"])
    assert _none(report[UNDEFINED])
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == len(tr) and (~csv["included"]).sum() == len(weak_tr)
    assert len(pd.read_csv(paths["pairs"])) == len(a.pairs)


def test_a_study_without_reference_runs_keeps_every_target(tmp_path):
    runs = simulate_runs(0, weak_target=WEAK)  # its baselines would lose to a reference, but none was run
    runs = runs[runs["kind"] != "reference"]
    a, paths, report = _analyse_and_write(runs, tmp_path)

    tr = _transfers(runs)
    g = a.gains
    assert len(g) == len(tr) and g["included"].all() and (g["excluded"] == "").all()
    assert g["beats_reference"].isna().all()
    assert (g["target"] == WEAK).sum() == 2 * 3 * 11
    assert len(a.pairs) == _n_pairs(tr) == 12 * 2 * 11 and WEAK in set(a.pairs["target"])
    _factor_counts(a, tr)
    _findings_ok(a, report)

    n_checks = len(runs.loc[runs["kind"] == "baseline", ["target_dataset", "target_task", "target_size"]]
                   .drop_duplicates())  # fmt: skip
    assert n_checks == 12 * 2
    check = a.baselines
    assert len(check) == n_checks
    assert check["beats_reference"].isna().all() and check["reference"].isna().all()
    assert (check["reason"] == "no reference run").all()

    table = report[BASELINES]["table"]
    assert len(table) == n_checks
    assert (table["reference"] == "").all() and (table["beats_reference"] == "").all()
    assert (table["reason"] == "no reference run").all()
    means = runs[runs["kind"] == "baseline"].groupby(["target_dataset", "target_task", "target_size"])["value"].mean()
    shown = [f"{means[(r.target_dataset, r.target_task, int(r.target_size))]:.4g}" for r in table.itertuples()]
    assert list(table["baseline"]) == shown

    assert _none(report[LEFT_OUT])
    assert _none(report[UNDEFINED])
    assert WEAK in set(report[TOP]["table"]["target"])
    assert pd.read_csv(paths["csv"])["included"].all()


def _zero_baselines(runs: pd.DataFrame, targets: set[str], references: str) -> pd.DataFrame:
    runs = runs.copy()
    onto = _target(runs).isin(targets)
    runs.loc[onto & (runs["kind"] == "baseline"), ["value", "metric.miou"]] = 0.0
    if references == "zero":
        runs.loc[onto & (runs["kind"] == "reference"), ["value", "metric.miou"]] = 0.0
    else:
        runs = runs[runs["kind"] != "reference"]
    return runs


@pytest.mark.parametrize(
    "scope,references",
    [("one target", "zero"),  # keypoint-like: AP 0, and its trivial predictor's AP 0 too
     ("every segmentation target", "none")],  # the study that crashed `tmx report` (all NA in the findings)
    ids=["one-target-with-a-zero-reference", "every-segmentation-target-no-references"],
)  # fmt: skip
def test_zero_baselines_give_undefined_gains_and_a_report(tmp_path, scope, references):
    sim = simulate_runs(0)
    seg = sorted(set(_target(sim[sim["target_task"] == "segmentation"])))
    targets = {"und0/segmentation"} if scope == "one target" else set(seg)
    runs = _zero_baselines(sim, targets, references)
    a, paths, report = _analyse_and_write(runs, tmp_path)

    tr = _transfers(runs)
    zero_tr, kept_tr = tr[tr["target"].isin(targets)], tr[~tr["target"].isin(targets)]
    assert len(zero_tr) == len(targets) * 2 * 3 * 11
    g = a.gains
    onto = g["target"].isin(targets)
    assert len(g) == len(tr) and onto.sum() == len(zero_tr)
    assert g.loc[onto, "gain"].isna().all() and g.loc[~onto, "gain"].notna().all()
    assert (g.loc[onto, "baseline"] == 0).all()
    assert not g.loc[onto, "included"].any() and g.loc[~onto, "included"].all()
    if references == "zero":  # AP 0 does not strictly beat the trivial predictor's AP 0: flagged first
        why = "baseline miou 0 does not beat the trivial predictor's 0 (higher is better)"
    else:  # no reference: left out because the gain divides by 0
        why = ZERO_MIOU
    assert (g.loc[onto, "excluded"] == why).all()

    # listed as undefined, with the reason
    und = a.undefined
    assert len(und) == len(zero_tr)
    assert (und["why"] == ZERO_MIOU).all() and (und["baseline"] == 0).all()
    assert sorted(und["transfer"]) == sorted(zero_tr["transfer"])
    assert sorted(und["value"]) == sorted(zero_tr["value"])

    # everything else analysed
    assert len(a.pairs) == _n_pairs(kept_tr) and not set(a.pairs["target"]) & targets
    _factor_counts(a, kept_tr)
    _findings_ok(a, report)

    sec = report[UNDEFINED]
    assert "relative gain is undefined" in sec["text"] and "relative gain is undefined" in sec["html_text"][0]
    table = sec["table"]
    assert table is not None and len(table) == len(zero_tr)
    assert list(table.columns) == ["transfer", "target_size", "seed", "init", "value", "baseline", "why"]
    assert (table["why"] == ZERO_MIOU).all() and (table["baseline"] == "0").all()
    assert sorted(table["transfer"]) == sorted(zero_tr["transfer"])

    left = report[LEFT_OUT]
    if references == "zero":
        assert set(left["table"]["target_dataset"] + "/" + left["table"]["target_task"]) == targets
        assert (left["table"]["reason"] == why).all() and len(left["table"]) == 2
    else:
        assert _none(left)
    csv = pd.read_csv(paths["csv"])
    assert csv["gain"].isna().sum() == len(zero_tr)


def test_missing_baselines_are_listed_and_the_rest_analysed(tmp_path):
    sim = simulate_runs(0)
    gone = (sim["kind"] == "baseline") & (_target(sim) == "und0/segmentation")
    assert gone.sum() == 2 * 3
    runs = sim[~gone]
    a, paths, report = _analyse_and_write(runs, tmp_path)

    tr = _transfers(runs)
    orphan_tr, kept_tr = tr[tr["target"] == "und0/segmentation"], tr[tr["target"] != "und0/segmentation"]
    assert len(orphan_tr) == 2 * 3 * 11

    und = a.undefined
    assert len(und) == len(orphan_tr)
    assert (und["why"] == NO_BASELINE).all() and und["baseline"].isna().all()
    assert sorted(und["transfer"]) == sorted(orphan_tr["transfer"])
    assert sorted(und["value"]) == sorted(orphan_tr["value"])

    # the others: analysed as usual
    g = a.gains
    assert len(g) == len(kept_tr) and "und0/segmentation" not in set(g["target"])
    assert g["included"].all() and g["gain"].notna().all()
    assert len(a.pairs) == _n_pairs(kept_tr) == 11 * 2 * 11
    _factor_counts(a, kept_tr)
    _findings_ok(a, report)
    assert len(report[FINDINGS]["table"]) == 10
    assert len(report[FACTORS]["table"]) == len(a.factors) == 7

    table = report[UNDEFINED]["table"]
    assert table is not None and len(table) == len(orphan_tr)
    assert (table["why"] == NO_BASELINE).all() and (table["baseline"] == "").all()
    assert sorted(table["transfer"]) == sorted(orphan_tr["transfer"])
    base = report[BASELINES]["table"]
    assert len(base) == 11 * 2 and "und0/segmentation" not in set(base["target_dataset"] + "/" + base["target_task"])
    assert _none(report[LEFT_OUT])
    assert len(pd.read_csv(paths["csv"])) == len(kept_tr)


def test_runs_of_jobs_the_study_no_longer_plans_are_left_out_of_the_report():
    """An earlier protocol's (or proxy features') runs stay in the store beside their successors under other keys:
    only planned keys count, and every run of a kind the plan has none of (a budgeted sweep's proxies)."""
    from analysis.report import current_runs

    runs = pd.DataFrame({"job_key": ["old", "new", "p1", "t1"], "kind": ["baseline", "baseline", "proxy", "transfer"]})
    expected = pd.DataFrame({"job_key": ["new", "t1"], "kind": ["baseline", "transfer"]})
    assert current_runs(runs, expected)["job_key"].tolist() == ["new", "p1", "t1"]
