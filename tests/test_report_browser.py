"""The report as a reader sees it: rendered in headless Chromium (Debian's), every image decoded."""

import shutil

import pytest
from analysis.simulate import simulate_runs as study_runs

from analysis.report import analyse, write_report

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1300,900"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
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
