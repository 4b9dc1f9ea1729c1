"""The study report: report.html (figures embedded, self-contained) and gains.csv.

    paths = write_report(runs, out_dir, study="demo")

Per target size, a source x target heatmap of the mean transfer gain (rows
and columns grouped by image domain), then the best sources per target and
the baselines they are measured against.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.gains import gain_matrix, transfer_gains  # noqa: E402

TEMPLATE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ study }}: transfer report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; }
</style></head><body>
<h1>{{ study }}: transfer report</h1>
<p>{{ counts }}</p>
<p>Gain of a transfer S&rarr;T over the baseline B&rarr;T of the same target, target size, seed and init:
<code>(m(S&rarr;T) &minus; m(B&rarr;T)) / |m(B&rarr;T)|</code>, sign flipped for lower-is-better metrics
(depth AbsRel), so a positive gain always means the source helped. Cells are means over seeds.</p>
{% for sec in sections %}
<h2>Target size {{ sec.size }}</h2>
<img alt="source x target transfer gain, target size {{ sec.size }}" src="data:image/png;base64,{{ sec.png }}">
<h3>Best sources per target</h3>
{{ sec.best }}
{% endfor %}
<h2>Baselines</h2>
{{ baselines }}
{% if not sections %}<p>No transfer has both a finished run and a finished baseline yet.</p>{% endif %}
</body></html>
"""
)


def heatmap_png(mat: pd.DataFrame, title: str) -> bytes:
    """A diverging heatmap of gains (in %), each cell annotated; PNG bytes."""
    values = mat.to_numpy(dtype=float) * 100
    lim = max(np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0, 1e-9)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * mat.shape[1], 1.2 + 0.55 * mat.shape[0]), dpi=110)
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), mat.columns, rotation=40, ha="right")
    ax.set_yticks(range(mat.shape[0]), mat.index)
    ax.set_xlabel("target (dataset/task)")
    ax.set_ylabel("source (dataset/task)")
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                dark = abs(values[i, j]) > 0.6 * lim
                ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, label="gain (%)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, escape=True)


def best_sources(gains: pd.DataFrame, target_size: int, k: int = 3) -> pd.DataFrame:
    """The `k` sources with the highest mean gain for every target."""
    sub = gains[gains["target_size"] == target_size]
    mean = sub.groupby(["target", "source"], as_index=False)["gain"].mean()
    top = mean.sort_values(["target", "gain"], ascending=[True, False]).groupby("target").head(k)
    return top.assign(gain=lambda d: (d["gain"] * 100).round(2)).rename(columns={"gain": "gain (%)"})


def write_report(runs: pd.DataFrame, out_dir: str | Path, study: str) -> dict[str, Path]:
    """Write report.html and gains.csv under `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gains = transfer_gains(runs)
    gains.to_csv(out / "gains.csv", index=False)
    sections = []
    for size in sorted(gains["target_size"].dropna().unique()):
        mat = gain_matrix(gains, size)
        png = heatmap_png(mat, f"{study}: transfer gain (%), target size {size}")
        sections.append({"size": int(size), "png": base64.b64encode(png).decode(), "best": _table(best_sources(gains, size))})
    base = runs[runs["kind"] == "baseline"]
    base = base[["target_dataset", "target_task", "target_size", "seed", "init", "primary_metric", "value"]]
    counts = ", ".join(f"{n} {kind}" for kind, n in runs["kind"].value_counts().sort_index().items())
    page = TEMPLATE.render(
        study=html.escape(study), counts=f"Finished runs: {counts or 'none'}.", sections=sections,
        baselines=_table(base.sort_values(["target_dataset", "target_task", "target_size", "seed"])),
    )  # fmt: skip
    (out / "report.html").write_text(page)
    return {"html": out / "report.html", "csv": out / "gains.csv"}
