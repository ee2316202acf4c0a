"""The report looked at as a person would: the `ci` study's results/report.html opened in headless
Chromium (Debian's chromium and chromium-driver, driven through Selenium), with screenshots of what
it shows, and checks that its tables and figures are there and readable.

Screenshots go to $REPORT_SHOTS (default: report_shots/ in the system's temporary folder)."""
from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or next(
    (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.access(p, os.X_OK)), None)
SHOTS = Path(os.environ.get("REPORT_SHOTS", Path(tempfile.gettempdir()) / "report_shots"))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="chromium and chromium-driver (Debian packages) are not installed: bash .ci/chromium-setup"),
]


@pytest.fixture(scope="module")
def report(ci_study) -> Path:
    path = ci_study.check() / "report.html"
    assert path.is_file(), "the ci study wrote no results/report.html"
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, report):
    """The report, loaded, with its embedded results (path -> caption, mime type, data URI)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(report.as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.innerText.length") > 50)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return browser


def decode(data_uri: str) -> bytes:
    header, _, payload = data_uri.partition(",")
    assert header.endswith(";base64"), header[:80]
    return base64.b64decode(payload)


def screenshot(driver, name: str) -> np.ndarray:
    path = SHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path))
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


def click(driver, xpath: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(expected_conditions.element_to_be_clickable((By.XPATH, xpath))).click()


def open_category(driver, report: Path, category: str) -> None:
    """From the start page, the result category `category` in the menu, as a reader clicks it."""
    driver.get(report.as_uri())
    click(driver, f"//nav//*[normalize-space(text())={category!r}]")


def visible_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def test_start_page_lists_the_result_categories(page, report):
    text = visible_text(page)
    shot = screenshot(page, "00_start")
    categories = page.execute_script("return categories")
    assert categories, "the report has no result category"
    for category in categories:
        assert category in text
    assert "Weight selection study ci" in text  # the workflow's description (report/workflow.rst)
    assert shot.shape[0] > 400 and shot.shape[1] > 800
    assert shot.std() > 0.05, "the start page renders as a blank screen"


def table_cells(driver) -> list:
    """The rows of every table of the current document, as the cells' visible texts."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => Array.from(t.rows)"
        ".map(r => Array.from(r.cells).map(c => c.innerText.trim())))")


def ours(row: pd.Series, group: str) -> str:
    """What the page shows for our number of one cell group: mean +- std, 2 decimals."""
    return f"{row[group + '_value']:.2f}" + ("" if pd.isna(row[group + "_std"]) else f" ± {row[group + '_std']:.2f}")


def test_tables_show_inline_with_ours_beside_the_seeds(page, report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    results = page.execute_script("return results")
    pages = {p: r for p, r in results.items() if r["mime_type"] == "text/html" and "/tables/" in p}
    csvs = {p: r for p, r in results.items() if r["mime_type"] == "text/csv" and "/tables/" in p}
    assert pages and len(pages) == len(csvs), f"a readable page per table: {sorted(pages)} vs {sorted(csvs)}"
    for i, (path, entry) in enumerate(sorted(pages.items())):
        table = pd.read_csv(io.BytesIO(decode(csvs[path[: -len(".html")] + ".csv"]["data_uri"])))
        open_category(page, report, "Tables")
        click(page, f"{row_xpath(path, entry)}//a[@iconname='eye']")
        frame = WebDriverWait(page, 30).until(lambda d: d.find_element(By.TAG_NAME, "iframe"))
        assert frame.size["height"] > 300 and frame.size["width"] > 600, f"{path} is shown at {frame.size}"
        page.switch_to.frame(frame)
        try:
            WebDriverWait(page, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.results td"))
            header, sub, *rows = table_cells(page)[0]
            title = page.find_element(By.TAG_NAME, "h1").text
        finally:
            page.switch_to.default_content()
        screenshot(page, f"12_table_inline_{i}_{Path(path).stem}")
        groups = [c[: -len("_value")] for c in table.columns if c.endswith("_value")]
        assert [h for h in header if h in groups] == groups, f"{path}: column groups {header}"
        assert sub.count("ours (mean ± std)") == len(groups) and "seeds" in sub
        assert len(rows) == len(table), f"{path}: {len(rows)} rows shown, {len(table)} in the CSV"
        for cells, (_, row) in zip(rows, table.iterrows()):
            for g in groups:
                assert ours(row, g) in cells, f"{path}: {ours(row, g)} not among {cells}"
                assert f"{int(row[g + '_n'])}/{int(row[g + '_n_expected'])}" in " ".join(cells)
        assert title and title in entry["caption"], f"{path}: heading {title!r} is not the caption's title"


def test_tables_are_listed_with_captions_and_their_rows_are_readable(page, report):
    results = page.execute_script("return results")
    tables = {path: r for path, r in results.items() if r["mime_type"] == "text/csv" and "/tables/" in path}
    assert tables, "no table in the report"
    # the claims' verdicts are a report item of their own (category Claims), not a table
    claims = {path for path, r in results.items() if r["mime_type"] == "text/csv" and path not in tables}
    assert "results/claims.csv" in {Path(c).as_posix()[-len("results/claims.csv"):] for c in claims}
    category = next(c for c, subs in page.execute_script("return categories").items()
                    if any(p in tables for paths in subs.values() for p in paths))
    open_category(page, report, category)
    text = visible_text(page)
    screenshot(page, "10_tables")
    for i, (path, entry) in enumerate(sorted(tables.items())):
        row = row_xpath(path, entry)
        assert all(str(v) in text for v in (entry.get("labels") or {"path": path}).values()), \
            f"{path} is not listed under {category}"
        # what the eye button hands the reader: the CSV itself
        from selenium.webdriver.common.by import By

        link = page.find_element(By.XPATH, f"{row}//a[@download]")
        frame = pd.read_csv(io.BytesIO(decode(link.get_attribute("href"))))
        assert len(frame) >= 1 and frame.shape[1] >= 3, f"{path}: {frame.shape}"
        assert frame.select_dtypes("number").notna().any().any(), f"{path} has no number"
        # the caption, shown by the information button
        click(page, f"{row}//a[@iconname='information-circle']")
        caption = " ".join(html.unescape(re.sub(r"<[^>]+>", "", entry["caption"])).split())
        assert len(caption) > 20, f"{path}: no caption"
        assert caption[:60] in " ".join(visible_text(page).split()), f"{path}: caption not shown"
        screenshot(page, f"11_table_info_{i}")
        open_category(page, report, category)


def row_xpath(path: str, entry: dict) -> str:
    """The report's table row of one result: by its labels (Snakemake shows a result's labels in
    place of its path when the rule gives them), else by its path."""
    labels = entry.get("labels") or {}
    cells = [str(v) for v in labels.values()] or [path]
    return "//tr[" + " and ".join(f"td[normalize-space(.)={c!r}]" for c in cells) + "]"


def figure_region(shot: np.ndarray, box: dict, scale: float) -> np.ndarray:
    top, left = int(box["top"] * scale), int(box["left"] * scale)
    bottom = min(int(box["bottom"] * scale), shot.shape[0])
    right = min(int(box["right"] * scale), shot.shape[1])
    return shot[top:bottom, left:right]


def test_figures_open_and_show_a_readable_image(page, report):
    from selenium.webdriver.support.ui import WebDriverWait

    results = page.execute_script("return results")
    categories = page.execute_script("return categories")
    figures = [(c, sub, p) for c, subs in categories.items() for sub, paths in subs.items() for p in paths
               if results[p]["mime_type"].startswith("image/")]
    assert figures, "no figure in the report"
    for i, (category, sub, path) in enumerate(figures):
        open_category(page, report, category)
        if sub != "Other" or len(categories[category]) > 1:  # "Other": results without a subcategory,
            click(page, f"//nav//*[normalize-space(text())={sub!r}]")  # a menu entry beside real ones
        assert "Reproduces the paper's Figure" in results[path]["caption"] or \
            "reproduces the paper's Figure" in results[path]["caption"], f"{path}: the caption names no paper figure"
        click(page, f"{row_xpath(path, results[path])}//a[@iconname='eye']")
        name = results[path]["filename"]
        script = ("return Array.from(document.images).filter(i => i.src.includes('filename=' + arguments[0]))"
                  ".map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().toJSON()])")
        WebDriverWait(page, 30).until(lambda d: any(c and w for c, w, _, _ in d.execute_script(script, name)))
        _, width, height, box = next(im for im in page.execute_script(script, name) if im[0] and im[1])
        assert width >= 400 and height >= 250, f"{path} decodes to {width}x{height}"
        assert box["width"] >= 300 and box["height"] >= 200, f"{path} is shown at {box['width']}x{box['height']}"
        shot = screenshot(page, f"20_figure_{i}_{Path(name).stem}")
        region = figure_region(shot, box, shot.shape[1] / page.execute_script("return window.innerWidth"))
        assert region.size, f"{path} lies outside the window"
        dark = (region.mean(axis=2) < 0.5).mean()
        assert 0.005 < dark < 0.5, f"{path}: {dark:.1%} dark pixels (blank, or a solid block)"
        assert region.std() > 0.05, f"{path} shows no contrast"


def test_a_table_page_with_paper_numbers_and_claims_renders_them(browser, tmp_path):
    """The page of a table with the paper's numbers and computed claims, opened on its own (the
    `ci` study's students are none of the paper's models and its tables state no claim)."""
    from selenium.webdriver.common.by import By

    from weightselect.results.html import write_table_page

    table = pd.DataFrame([{"dataset": "cifar100", "random_value": 72.0, "random_mean": 72.0, "random_std": 1.5,
                           "random_paper": 72.3, "random_diff": -0.3, "random_n": 3, "random_n_expected": 3,
                           "ws_uniform_value": 81.0, "ws_uniform_mean": 81.0, "ws_uniform_std": 0.5,
                           "ws_uniform_paper": 81.4, "ws_uniform_diff": -0.4, "ws_uniform_n": 2,
                           "ws_uniform_n_expected": 3, "ws_uniform_missing_seeds": "2"}])
    claim = dict(claim="weight selection beats random init", better="ws_uniform", than="random",
                 test="Welch t-test", n_better=2, n_than=3)
    claims = pd.DataFrame([claim | dict(scope="vit_t / cifar100", effect=9.0, ci_low=6.1, ci_high=11.9,
                                        p_value=0.001, verdict="holds"),
                           claim | dict(scope="all", effect=9.0, ci_low=-0.5, ci_high=18.5, p_value=0.06,
                                        verdict="inconclusive")])
    out = tmp_path / "table2.html"
    write_table_page(table, out, "Table 2: random init vs weight selection", claims=claims)
    report_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")  # the browser is the module's: the report's tab stays as it is
    try:
        browser.get(out.as_uri())
        SHOTS.mkdir(parents=True, exist_ok=True)
        screenshot(browser, "30_table_page_paper_and_claims")
        results, shown = table_cells(browser)
        colours = [browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", e)
                   for e in browser.find_elements(By.CSS_SELECTOR, "span.verdict")]
    finally:
        browser.close()
        browser.switch_to.window(report_tab)
    assert results[2] == ["cifar100", "72.00 ± 1.50", "72.30", "-0.30", "3/3",
                          "81.00 ± 0.50", "81.40", "-0.40", "2/3 (missing 2)"]
    assert shown[1][:2] == ["weight selection beats random init (ws_uniform vs random)", "vit_t / cifar100"]
    assert [r[-1] for r in shown[1:]] == ["holds", "inconclusive"]
    assert colours == ["rgb(26, 127, 55)", "rgb(154, 103, 0)"]  # green holds, amber inconclusive
