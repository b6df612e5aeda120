"""The HTML report, opened in a real browser (headless Chromium, network off), as a reader would open it.

Skipped where Chromium, chromedriver or selenium are missing, except under CI (the variable CI set),
where that fails: .ci/run installs them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from carcolor import layout
from carcolor.reporting import pages, render
from tests.browser import check_page, tools

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
QMD = ROOT / "report" / "index.qmd"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>
<h1 id="top">A page</h1>
<img alt="dot" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==">
<a href="#top">up</a> <a href="other.html">other</a> <a href="other.html#there">there</a>
<a href="https://doi.org/10.6084/m9.figshare.19586296">a citation is not a request</a>
{extra}
</body></html>"""


def _assert_clean(result: dict) -> None:
    assert not result["problems"], "\n".join(result["problems"]) + f"\nscreenshot: {result['screenshot']}"
    assert result["screenshot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser():
    return tools()


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory, browser):
    """The fixture tables' report, rendered the way tests/test_render.py renders it (fallback renderer),
    with a page for each of its runs (the fixture has no notebooks: a one-cell one each), as the
    workflow puts them next to it."""
    import nbformat
    import pandas as pd

    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        result = render.render_report(QMD, out, FIXTURES, renderer="fallback", log=lambda _msg: None)
    notebooks = tmp_path_factory.mktemp("runs")
    for cell in pd.read_csv(FIXTURES / "tables" / "summary.csv")["cell"]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(cell)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=f"{cell}\n")])])
        nbformat.write(nb, notebooks / f"{cell}.ipynb")
        pages.export(notebooks / f"{cell}.ipynb", out / layout.page_path(cell), cell)
    return Path(result["html"])


# --------------------------------------------------------------------------- the checker itself


def test_checker_passes_a_clean_page(tmp_path, browser):
    (tmp_path / "other.html").write_text('<html><body><p id="there">x</p></body></html>')
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(extra=""))
    result = check_page(page, tmp_path / "shots" / "page.png")
    _assert_clean(result)
    assert result["images"] == 1 and len(result["links"]) == 4


def test_checker_names_every_kind_of_fault(tmp_path, browser):
    (tmp_path / "other.html").write_text("<html><body><p>no anchor</p></body></html>")
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(extra="""
<img alt="gone" src="missing.png"> <img alt="remote" src="https://example.org/x.png">
<a href="#nowhere">bad anchor</a> <a href="cells/absent.html">bad file</a>
<script>console.error("boom from the page");</script>"""))
    problems = "\n".join(check_page(page, tmp_path / "page.png")["problems"])
    assert "boom from the page" in problems
    assert "image not loaded: file://" in problems and "missing.png" in problems
    assert "image not loaded: https://example.org/x.png" in problems
    assert "request leaves the file: https://example.org/x.png" in problems
    assert "no element with id 'nowhere'" in problems
    assert "cells/absent.html" in problems and "does not exist" in problems
    assert "no id 'there' in other.html" in problems


# --------------------------------------------------------------------------- the report


def test_fixture_report_in_a_browser(fixture_report, tmp_path):
    result = check_page(fixture_report, tmp_path / "index.png")
    _assert_clean(result)
    assert result["images"] >= 4
    assert "#fig-loss" in result["links"]  # the figure cross-references were among the links checked
    assert "cells/mobilenet_v2-adam-s0.html" in result["links"]  # and the links to the runs' pages


@pytest.mark.workflow
def test_smoke_report_in_a_browser(smoke_run, tmp_path):
    result = check_page(smoke_run / "results" / "report" / "index.html", tmp_path / "index.png")
    _assert_clean(result)
    assert result["images"] >= 4


@pytest.mark.workflow
def test_smoke_cell_page_in_a_browser(smoke_run, tmp_path, browser):
    pages = sorted((smoke_run / "results" / "report" / "cells").glob("*.html"))
    assert pages, "no cell page in results/report/cells/"
    result = check_page(pages[0], tmp_path / f"{pages[0].stem}.png")
    _assert_clean(result)
    # the cell's curves; a kernel that inherits MPLBACKEND=Agg captures no figure, so the page shows none
    assert result["images"] >= 1, f"{pages[0].name} shows no image: the cell's curves are missing"
