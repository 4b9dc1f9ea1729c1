"""The study report: report.html (self-contained, figures embedded), report.md and CSV tables.

    result = analyse(runs, expected)             # pure: DataFrames in, DataFrames out
    paths = write_report(result, out_dir, "demo")

Sections: Mensink's findings (held / not held / not enough evidence / not
testable, with numbers, under the evidence rule), the factor table (each
factor tested at the level where it varies, with its units of replication),
the units of replication of the study, the variance components and the joint
mixed model, per target task type and size a source x target gain
heatmap (rows and columns grouped by image domain), gain distributions per
factor, the top three sources per target, baselines beside their trivial
predictor (reference), the targets left out and why, the undefined gains, and
the failed or missing jobs.

`Analysis.gains` keeps every transfer that has a baseline, with `included`
and `excluded` (why not) from `gains.mark_gains`; the heatmaps show them all
(a left-out target's label says so). The pairs, the factor table, the joint
model, the distributions and the findings use only the included transfers.
"""

from __future__ import annotations

import base64
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.factors import FACTORS, add_factors, factor_tests, mixed_model
from analysis.findings import EVIDENCE_RULE, check_findings
from analysis.gains import (
    CHECK,
    baseline_check,
    gain_matrix,
    mark_gains,
    summarize_gains,
    transfer_gains,
    undefined_gains,
)
from analysis.load import finished
from analysis.policy import predict_matrix, recommended
from analysis.proxy_quality import pairs_table, proxy_quality, proxy_table


@dataclass
class Analysis:
    runs: pd.DataFrame  # every job run, any status
    gains: pd.DataFrame  # one row per transfer run with a baseline, with factor columns, `included` and `excluded`
    pairs: pd.DataFrame  # mean over seeds per (source, target, size, init) of included gains, with intervals
    factors: pd.DataFrame  # of included gains, each factor tested at its level (`factors.factor_tests`)
    model: pd.DataFrame  # of included gains: the mixed model's fixed effects (`factors.mixed_model`)
    findings: pd.DataFrame
    failed: pd.DataFrame  # jobs whose latest run failed and that never finished
    missing: pd.DataFrame  # planned jobs with no finished or failed run
    baselines: pd.DataFrame  # per target, size and init: baseline vs reference (`gains.baseline_check`)
    undefined: pd.DataFrame  # transfers with no relative gain, and why (`gains.undefined_gains`)
    variance: pd.DataFrame = field(default_factory=pd.DataFrame)  # the mixed model's variance components
    units: pd.DataFrame = field(default_factory=pd.DataFrame)  # the units of replication and their numbers
    proxies: pd.DataFrame = field(default_factory=pd.DataFrame)  # counted transfers beside their proxies
    proxy_quality: pd.DataFrame = field(default_factory=pd.DataFrame)  # per task type and proxy, over targets
    predicted: pd.DataFrame = field(default_factory=pd.DataFrame)  # a budgeted sweep's pairs: measured or predicted


def units_table(counted: pd.DataFrame) -> pd.DataFrame:
    """How many of each unit of replication the counted transfers come from: what every test's n is made of."""
    rows = [("sources", counted["source"].nunique(), "a source's quality is shared by all its transfers"),
            ("targets", counted["target"].nunique(), "a target's baselines are shared by all transfers onto it"),
            ("pairs", counted.groupby(["source", "target", "init"]).ngroups if len(counted) else 0,
             "(source, target): a pair's seeds and sizes share its own effect"),
            ("target sizes", counted["target_size"].nunique(), "a target at each size has its own baselines"),
            ("seeds", counted["seed"].nunique(), "each seed of a target has its own baseline"),
            ("transfers", len(counted), "not independent: tests count the units above")]  # fmt: skip
    return pd.DataFrame(rows, columns=["unit", "n", "what it shares"])


def analyse(runs: pd.DataFrame, expected: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0,
            n_perm: int = 2000, budgeted: bool = False) -> Analysis:  # fmt: skip
    """Everything the report shows, from the tidy runs frame and (optionally) the planned jobs.

    `n_boot` bootstrap resamples for the per-pair intervals, `n_perm` random permutations for a factor whose
    arrangements are too many to enumerate. `budgeted`: the study ran as a budgeted sweep (`tmx run --budget`),
    so its transfers that never ran are predicted (`predicted_pairs`), not missing.

    With `expected`, runs of jobs the study no longer plans are left out (`current_runs`): an earlier protocol's
    or proxy features' runs stay in the tracking store beside their successors, under other keys.
    """
    if expected is not None:
        runs = current_runs(runs, expected)
    done = finished(runs)
    check = baseline_check(done)
    g = add_factors(mark_gains(transfer_gains(done), check))
    counted = g[g["included"]]
    pairs = summarize_gains(counted, done, n_boot=n_boot, seed=seed)
    factors = factor_tests(counted, n_perm=n_perm, seed=seed)
    model, variance = mixed_model(counted)
    finished_keys = set(done["job_key"])
    failed = runs[(runs["status"] == "FAILED") & ~runs["job_key"].isin(finished_keys)]
    failed = failed.drop_duplicates("job_key", keep="last")[["kind", "name", "job_key", "error"]]
    if expected is not None:
        seen = finished_keys | set(failed["job_key"])
        missing = expected[~expected["job_key"].isin(seen)][["kind", "name", "job_key"]]
        if budgeted:
            missing = missing[missing["kind"] != "transfer"]
    else:
        missing = pd.DataFrame(columns=["kind", "name", "job_key"])
    proxies = proxy_table(done, g)  # empty unless the study ran proxy jobs
    quality = proxy_quality(proxies, by="task", seed=seed).summary if len(proxies) else pd.DataFrame()
    return Analysis(runs, g, pairs, factors, model, check_findings(done, g, pairs, factors),
                    failed.reset_index(drop=True), missing.reset_index(drop=True), check,
                    undefined_gains(done, g), variance, units_table(counted), proxies, quality,
                    predicted_pairs(done, g, seed) if budgeted else pd.DataFrame())  # fmt: skip


def current_runs(runs: pd.DataFrame, expected: pd.DataFrame) -> pd.DataFrame:
    """The runs of planned jobs (`expected`: kind, job_key), and every run of a kind the plan has none of (a
    budgeted sweep's proxy runs in a study since run in full, without `proxies:`)."""
    keep = runs["job_key"].isin(set(expected["job_key"])) | ~runs["kind"].isin(set(expected["kind"]))
    return runs[keep]


def predicted_pairs(done: pd.DataFrame, gains: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every pair a proxy scored: its measured value (the transfer's metric minus its baseline's, sign-adjusted)
    where the transfer finished, else the budgeted policy's model fitted on the measured ones
    (`policy.predict_matrix`): mean, 95% interval and P(best source of its target). Columns: task, target, source,
    measured, value, mean, lower, upper, p_best, included. Empty when nothing was measured."""
    table = pairs_table(done, gains)
    ok = table["value"].notna()
    if table.empty or not ok.any():
        return pd.DataFrame()
    known = dict(zip(zip(table.loc[ok, "target"], table.loc[ok, "source"]), table.loc[ok, "value"]))
    out = predict_matrix(table, known, seed=seed).merge(table[["target", "source", "task", "included"]],
                                                        on=["target", "source"])  # fmt: skip
    return out[["task", "target", "source", "measured", "value", "mean", "lower", "upper", "p_best", "included"]]


def predicted_matrix(predicted: pd.DataFrame, task: str) -> pd.DataFrame:
    """One task type's targets x sources as text: a measured value as it is ("+0.031"), a predicted one marked
    with ~ and its 95% interval ("~+0.012 [-0.020, +0.044]"); empty where the pair was not scored."""
    sub = predicted[predicted["task"] == task]
    text = np.where(sub["measured"], sub["mean"].map("{:+.3f}".format),
                    "~" + sub["mean"].map("{:+.3f}".format) + " [" + sub["lower"].map("{:+.3f}".format) + ", "
                    + sub["upper"].map("{:+.3f}".format) + "]")  # fmt: skip
    return (sub.assign(cell=text).pivot(index="target", columns="source", values="cell").fillna("")
            .rename_axis(index=None, columns=None).reset_index(names="target"))  # fmt: skip




# -- figures ----------------------------------------------------------------------------------------


def _figure(**kwargs) -> Figure:
    """A figure drawn by its own Agg canvas: no pyplot, no global backend, nothing to close."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def heatmap_figure(mat: pd.DataFrame, title: str, row_groups: list[str], col_groups: list[str],
                   left_out: frozenset[str] = frozenset()):  # fmt: skip
    """A diverging heatmap of gains (in %), each cell annotated, lines between domain groups; a matplotlib figure.

    Columns in `left_out` are labelled "(left out)". The figure is sized to its labels and the title wraps to
    its width, so no text falls outside it.
    """
    values = mat.to_numpy(dtype=float) * 100
    finite = np.isfinite(values)
    lim = max(float(np.nanmax(np.abs(values))) if finite.any() else 1.0, 1e-9)
    xlabels = [f"{c} [{d}]" + (" (left out)" if c in left_out else "") for c, d in zip(mat.columns, col_groups,
                                                                                      strict=True)]  # fmt: skip
    ylabels = [f"{r} [{d}]" for r, d in zip(mat.index, row_groups, strict=True)]
    longest = max(map(len, xlabels), default=0), max(map(len, ylabels), default=0)
    # inches: ~0.075 per label character at 10 pt, 0.8 per column, 0.45 per row, x labels at 40 degrees
    width = max(5.0, 2.2 + 0.075 * longest[1] + 0.8 * mat.shape[1])
    title = textwrap.fill(title, max(20, int(width * 100 * 0.85 / 8.5)))  # ~8.5 px a character at 11 pt
    height = 1.4 + 0.25 * title.count("\n") + 0.05 * longest[0] + 0.45 * mat.shape[0]
    fig = _figure(figsize=(width, height), dpi=100, layout="constrained")  # makes room for every label
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), xlabels, rotation=40, ha="right")
    ax.set_yticks(range(mat.shape[0]), ylabels)
    for groups, line in ((row_groups, ax.axhline), (col_groups, ax.axvline)):
        for i in range(1, len(groups)):
            if groups[i] != groups[i - 1]:
                line(i - 0.5, color="black", lw=1.2)
    ax.set_xlabel("target [domain]")
    ax.set_ylabel("source [domain]")
    fig.suptitle(title, fontsize=11)  # centred on the figure, which the wrapped title fits
    if values.size <= 200:  # beyond that the numbers are unreadable: gains.csv has them
        for i, j in zip(*np.nonzero(finite), strict=True):
            dark = abs(values[i, j]) > 0.6 * lim
            ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, label="gain (%)")
    return fig


def heatmap_png(mat: pd.DataFrame, title: str, row_groups: list[str], col_groups: list[str],
                left_out: frozenset[str] = frozenset()) -> bytes:  # fmt: skip
    """`heatmap_figure` as PNG bytes."""
    return _png(heatmap_figure(mat, title, row_groups, col_groups, left_out))


def factor_png(g: pd.DataFrame) -> bytes | None:
    """Box plots of gain (%) per factor, the two groups side by side."""
    shown = [f for f in FACTORS if g[f.name].notna().any() and g[f.name].dropna().nunique() == 2]
    if not shown:
        return None
    fig = _figure(figsize=(2.6 * len(shown), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(shown), squeeze=False)
    for ax, f in zip(axes[0], shown, strict=True):
        col = g[f.name]
        data = [g.loc[col == True, "gain"] * 100, g.loc[col == False, "gain"] * 100]  # noqa: E712
        ax.boxplot(data, tick_labels=[textwrap.fill(f.yes, 16), textwrap.fill(f.no, 16)])
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(textwrap.fill(f.question, 32), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[0][0].set_ylabel("gain (%)")
    return _png(fig)


# -- tables ---------------------------------------------------------------------------------------


def best_sources(pairs: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The `k` sources with the highest mean gain for every (target, size, init)."""
    top = pairs.sort_values(["target", "target_size", "gain"], ascending=[True, True, False])
    top = top.groupby(["target", "target_size", "init"]).head(k)
    cols = ["target", "target_size", "source", "gain", "ci_low", "ci_high", "n_seeds", "within_noise"]
    return top[cols].reset_index(drop=True)


def baselines_table(check: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`baseline_check` for the reader: each baseline beside its trivial predictor (and scratch, when run)."""
    out = check.assign(beats_reference=check["beats_reference"].map({True: "yes", False: "NO: left out"}).fillna(""))
    scratch = runs[runs["kind"] == "scratch"].groupby(CHECK[:3])["value"].mean().rename("scratch")
    if len(scratch):
        out = out.merge(scratch.reset_index(), on=CHECK[:3], how="left")
    cols = [*CHECK, "primary_metric", "baseline", "reference", *(["scratch"] if len(scratch) else []), "seeds",
            "beats_reference", "reason"]  # fmt: skip
    return out[cols]


def left_out_targets(check: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """Targets whose baseline does not beat the trivial predictor: the transfers left out with them, and why."""
    weak = check[check["beats_reference"].eq(False).fillna(False)]
    n = gains.groupby(CHECK).size().rename("transfers_left_out").reset_index()
    out = weak.merge(n, on=CHECK, how="left").fillna({"transfers_left_out": 0})
    return out[[*CHECK, "transfers_left_out", "reason"]].reset_index(drop=True)


def _percent(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df.assign(**{c: df[c].map(lambda v: "" if pd.isna(v) else f"{v:+.2%}") for c in cols if c in df})


def _html(df: pd.DataFrame) -> str:
    """The table inside a div that scrolls sideways, so a wide table never widens the page."""
    if df.empty:
        return "<p>None.</p>"
    table = df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="", escape=True)
    return f'<div class="scroll">{table}</div>'



def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "None.\n"

    def cell(v) -> str:
        text = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else (f"{v:.4g}" if isinstance(v, float) else str(v))
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


PAGE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ study }}: transfer report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.scroll { overflow-x: auto; max-width: 100%; }
</style></head><body>
<h1>{{ study }}: transfer report</h1>
<p>{{ counts }}</p>
<p>Gain of a transfer S&rarr;T over the baseline B&rarr;T of the same target, target size, seed and init:
<code>(m(S&rarr;T) &minus; m(B&rarr;T)) / |m(B&rarr;T)|</code>, sign flipped for lower-is-better metrics
(depth AbsRel), so a positive gain means the source helped. Means are over seeds; intervals are 95% bootstrap.
A transfer counts in the statistics only when its gain is defined and its target's baseline beats the trivial
predictor fitted on the same training subset (the reference); the heatmaps show every transfer.</p>
{% for sec in sections %}
<h2 id="{{ sec.id }}">{{ sec.title }}</h2>
{% if sec.text %}<p>{{ sec.text }}</p>{% endif %}
{% if sec.png %}<img alt="{{ sec.title }}" src="data:image/png;base64,{{ sec.png }}">{% endif %}
{{ sec.html }}
{% endfor %}
</body></html>
"""
)


FACTOR_TEXT = (
    "Each factor is tested where it varies, with the units that replicate it (unit, n_units): a source-level factor "
    "(multi-source, source larger than target) by permuting its labels across sources; a pair-level factor (same "
    "domain, same task, includes the target's domain) among the sources of each target, source and target effects "
    "removed; target size by swapping each target's two sizes. effect: the factor's coefficient at that level "
    "(gain, yes minus no), with a 95% interval from the permutation distribution; p: the permutation p-value "
    "(two-sided); min_p: the smallest p the design can give at all (too few units cannot reach 0.05, and the "
    "findings say so); p_holm: Holm-corrected over the factors (statsmodels). The medians are of the two groups of "
    "transfers, descriptive only."
)
PROXY_TEXT = ("Each proxy job scored a source's frozen backbone on a target's training subset (analysis/proxies.py); "
              "here, per task type, how well each proxy ranks the sources of a target by the transfers' measured "
              "gains (counted transfers only), as mean and sd over targets: Kendall tau, weighted tau, Pearson, and "
              "whether the true best source is the proxy's first (top-1) or in its first three (top-3). combined: "
              "the mean of the proxies' per-target z-scores; popularity: a source's mean rank on the other targets; "
              "random: a random order. proxies.csv holds the table; `tmx replay proxies.csv --budget 0.2` replays "
              "a budgeted sweep on it.")  # fmt: skip
BUDGET_TEXT = ("The study ran as a budgeted sweep (`tmx run --budget`): every proxy, then the transfers the policy "
               "chose (analysis/policy.py). Values are the transfer's primary metric minus its baseline's, in metric "
               "units, signed so that higher means the source helped. A measured transfer shows its value; the "
               "others the policy's model fitted on the measured ones (per-target and per-source offsets, the "
               "proxies' scores, same domain, same task type, source size, a rank-1 term), with a 95% interval. "
               "p_best: in what fraction of the model's bootstrap refits the source is its target's best. "
               "predicted.csv holds every pair; `tmx run --budget` with a larger budget measures more, reusing these.")
MATRIX_TEXT = ("Rows: targets (size and seed); columns: sources. A plain value was measured; ~mean [low, high] was "
               "predicted, with its 95% interval.")
UNITS_TEXT = ("Transfers are not independent observations. What the tests' numbers are made of: the counted transfers "
              "come from these sources, targets, pairs, sizes and seeds.")
VARIANCE_TEXT = (
    "How much of the spread of the gain is each unit's (variance components of the joint mixed model, REML): a "
    "source's quality, a target's level, a pair's own effect, a baseline's noise shared by its transfers, and a "
    "transfer's own seed noise. A component the design cannot separate (one size and one seed: a baseline is its "
    "target) is not listed and sits in the others."
)
MODEL_TEXT = (
    "Gain on all factors jointly, with crossed random effects for source, target, pair and baseline (the "
    "variance components above): each coefficient is adjusted for the others. z and p are Wald statistics of the "
    "fixed effects (normal), for reading alongside the factor table, whose permutation p-values are the tests."
)


def _sections(a: Analysis, study: str) -> list[dict]:
    g = a.gains
    counted = g[g["included"]]
    sections = [
        {"title": "Findings of Mensink et al. on this study", "text": EVIDENCE_RULE, "table": a.findings},
        {"title": "Factors of influence", "text": FACTOR_TEXT,
         "table": _percent(a.factors, ["median_yes", "median_no", "effect", "ci_low", "ci_high"])},
        {"title": "Units of replication", "text": UNITS_TEXT, "table": a.units},
        {"title": "Variance components", "text": VARIANCE_TEXT, "table": a.variance},
        {"title": "Joint mixed model of gain on the factors", "text": MODEL_TEXT, "table": a.model},
    ]  # fmt: skip
    left_out = left_out_targets(a.baselines, g)
    for task in sorted(g["target_task"].unique()):
        for size in sorted(g.loc[g["target_task"] == task, "target_size"].unique()):
            sub = g[(g["target_task"] == task) & (g["target_size"] == size)]
            mat = gain_matrix(sub, size)
            src_dom = sub.drop_duplicates("source").set_index("source")["source_domain"]
            tgt_dom = sub.drop_duplicates("target").set_index("target")["target_domain"]
            weak = left_out[(left_out["target_task"] == task) & (left_out["target_size"] == size)]
            title = f"Transfer gain onto {task} targets, target size {size}"
            png = heatmap_png(mat, f"{study}: {title.lower()}", [src_dom[s] for s in mat.index],
                              [tgt_dom[t] for t in mat.columns],
                              frozenset(weak["target_dataset"] + "/" + weak["target_task"]))  # fmt: skip
            sections.append({"title": title, "png": png, "file": f"heatmap_{task}_{size}.png"})
    dist = factor_png(counted) if not counted.empty else None
    if dist is not None:
        sections.append({"title": "Gain distributions per factor", "png": dist, "file": "factors.png"})
    sections.append({"title": "Top three sources per target", "table": _percent(best_sources(a.pairs), ["gain", "ci_low", "ci_high"])})
    if len(a.proxy_quality):
        sections.append({"title": "Transferability proxies: how well each ranks the sources of a target",
                         "text": PROXY_TEXT, "table": a.proxy_quality})  # fmt: skip
    if len(a.predicted):
        p = a.predicted
        line = (f"{int(p['measured'].sum())} of {len(p)} transfers measured "
                f"({p['measured'].mean():.0%}); the other {int((~p['measured']).sum())} are predicted. ")  # fmt: skip
        sections.append({"title": "Budgeted sweep: recommended sources per target", "text": line + BUDGET_TEXT,
                         "table": recommended(p, 3, keep=("task",))})  # fmt: skip
        for task in sorted(p["task"].unique()):
            sections.append({"title": f"Budgeted sweep: measured and predicted transfers onto {task} targets",
                             "text": MATRIX_TEXT, "table": predicted_matrix(p, task)})  # fmt: skip
    sections += [
        {"title": "Baselines", "table": baselines_table(a.baselines, finished(a.runs)),
         "text": "Means over seeds. A baseline must beat the trivial predictor fitted on the same training subset "
                 "(reference: each pixel's majority class or median depth, or a fixed prior box); otherwise "
                 "the transfers onto its target are left out of the statistics."},
        {"title": "Targets left out (the baseline does not beat the trivial predictor)", "table": left_out},
        {"title": "Undefined gains", "table": a.undefined,
         "text": "Transfers whose relative gain is undefined: left out of the statistics."},
        {"title": "Failed jobs", "table": a.failed},
        {"title": "Missing jobs (planned, never run or skipped)", "table": a.missing},
    ]  # fmt: skip
    for i, sec in enumerate(sections):
        sec["id"] = f"s{i}"
    return sections


def write_report(a: Analysis, out_dir: str | Path, study: str) -> dict[str, Path]:
    """Write report.html, report.md, gains.csv, pairs.csv and the figures as PNG under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = _sections(a, study)
    counts = finished(a.runs)["kind"].value_counts().sort_index()
    line = (f"Finished runs: {', '.join(f'{n} {k}' for k, n in counts.items()) or 'none'}; "
            f"{len(a.failed)} failed, {len(a.missing)} missing.")  # fmt: skip
    paths = {"html": out / "report.html", "md": out / "report.md", "csv": out / "gains.csv", "pairs": out / "pairs.csv"}
    md = [f"# {study}: transfer report\n", line + "\n"]
    for sec in sections:
        md.append(f"## {sec['title']}\n")
        if "text" in sec:
            md.append(sec["text"] + "\n")
        if "png" in sec:
            (out / sec["file"]).write_bytes(sec["png"])
            paths[sec["file"]] = out / sec["file"]
            md.append(f"![{sec['title']}]({sec['file']})\n")
            sec["png"] = base64.b64encode(sec["png"]).decode()
        sec["html"] = _html(sec["table"]) if "table" in sec else ""
        if "table" in sec:
            md.append(_md(sec["table"]))
    paths["html"].write_text(PAGE.render(study=study, counts=line, sections=sections))
    paths["md"].write_text("\n".join(md))
    a.gains.to_csv(paths["csv"], index=False)
    a.pairs.to_csv(paths["pairs"], index=False)
    if len(a.proxies):  # what `tmx replay` reads
        paths["proxies"] = out / "proxies.csv"
        a.proxies.to_csv(paths["proxies"], index=False)
    if len(a.predicted):  # a budgeted sweep's every pair, measured or predicted
        paths["predicted"] = out / "predicted.csv"
        a.predicted.to_csv(paths["predicted"], index=False)
    return paths
