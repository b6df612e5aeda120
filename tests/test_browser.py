"""The HTML report, opened in a real browser (headless Chromium, network off), as a reader would open it.

Skipped where Chromium, chromedriver or selenium are missing, except under CI (the variable CI set),
where that fails: .ci/run installs them.
"""
from __future__ import annotations

import pytest

from tests.browser import check_page, tools

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


def test_fixture_report_in_a_browser(browser, fixture_report, tmp_path):
    result = check_page(fixture_report.html, tmp_path / "index.png")
    _assert_clean(result)
    assert result["images"] >= 4
    assert {"#fig-loss", "#tbl-data"} <= set(result["links"])  # the cross-references were among the links checked
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
