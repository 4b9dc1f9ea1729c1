"""The report as a reader sees it: rendered in headless Chromium (Debian's), every image decoded, no sideways scroll."""


import numpy as np
import pandas as pd
import pytest
from conftest import CHROMEDRIVER, CHROMIUM, NO_CHROMIUM, headless_chromium

from analysis.findings import EVIDENCE_RULE
from analysis.load import runs_frame
from analysis.report import analyse, heatmap_figure, write_report
from analysis.simulate import simulate_runs as study_runs


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_CHROMIUM)
    driver = headless_chromium(tmp_path / "chromium", "1300,900")
    yield driver
    driver.quit()


def test_report_renders_with_no_broken_image(browser, tmp_path):
    result = analyse(study_runs(0, domain_effect=0.05), n_boot=200)
    paths = write_report(result, tmp_path / "report", "seeded")
    browser.get(paths["html"].resolve().as_uri())
    assert browser.title == "seeded: transfer report"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(images) >= 3  # a heatmap per target task type, and the factor distributions
    broken = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"broken images: {broken}"
    text = browser.find_element("tag name", "body").text
    for heading in ("Findings of Mensink et al. on this study", "Factors of influence", "Top three sources per target"):
        assert heading in text
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_report_fits_1400_pixels_and_wide_tables_scroll_inside_it(browser, tmp_path):
    """At 1400 px the page never scrolls sideways: a table wider than that (here the failed jobs, whose error is one
    long unbreakable path) scrolls inside its own box. Left-out targets and the evidence rule are on the page."""
    error = "FileNotFoundError: " + "/".join(["a_rather_long_directory_name_in_a_checkpoint_store"] * 12)
    failed = runs_frame([{"kind": "source", "job_key": "src/long", "status": "FAILED", "error": error,
                          "mlflow.runName": "source und0/depth"}])  # fmt: skip
    runs = pd.concat([study_runs(0, domain_effect=0.05, weak_target="dri0/depth"), failed], ignore_index=True)
    paths = write_report(analyse(runs, n_boot=200), tmp_path / "report", "a-study-with-a-rather-long-name-v2")
    browser.set_window_size(1400, 900)
    browser.get(paths["html"].resolve().as_uri())
    page = browser.execute_script("const d = document.documentElement; return [d.clientWidth, d.scrollWidth];")
    browser.save_screenshot(str(tmp_path / "report-1400.png"))
    assert page[0] <= 1400 and page[1] <= page[0], f"the page scrolls sideways: client and scroll width {page}"
    boxes = browser.execute_script("return Array.from(document.querySelectorAll('div.scroll'))"
                                   ".map(d => [d.clientWidth, d.scrollWidth, d.innerText.slice(0, 40)]);")  # fmt: skip
    assert any(scroll > client and "source" in txt for client, scroll, txt in boxes), boxes  # the failed-jobs table
    text = browser.find_element("tag name", "body").text
    assert EVIDENCE_RULE in text
    for heading in ("Baselines", "Targets left out", "Undefined gains"):
        assert heading in text
    assert "does not beat the trivial predictor's" in text and "dri0" in text


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 2), (3, 1), (12, 6), (1, 30)])
def test_heatmap_text_stays_inside_the_figure(rows, cols):
    """Long study names, long dataset names, a left-out target: title, labels and colour bar all inside the PNG."""
    rng = np.random.default_rng(rows * 100 + cols)
    mat = pd.DataFrame(rng.normal(0, 0.05, (rows, cols)),
                       index=[f"source_dataset_{i}/segmentation" for i in range(rows)],
                       columns=[f"a_long_target_dataset_name_{j}/keypoints" for j in range(cols)])  # fmt: skip
    title = "a-study-with-a-rather-long-name-v2: transfer gain onto keypoints targets, target size 1000"
    fig = heatmap_figure(mat, title, ["underwater"] * rows, ["synthetic"] * cols, frozenset(mat.columns[:1]))
    fig.canvas.draw()
    box, (w, h) = fig.get_tightbbox(fig.canvas.get_renderer()), fig.get_size_inches()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= w and box.y1 <= h, (box, (w, h))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0].endswith("(left out)") and not any(t.endswith("(left out)") for t in labels[1:])
    assert fig.get_suptitle().replace("\n", " ") == title  # wrapped where narrow, never shortened
