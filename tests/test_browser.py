"""The HTML report, opened in a real browser (headless Chromium, network off), as a reader would open it,
and audited for accessibility by axe-core where $CARCOLOR_AXE names its axe.min.js.

Skipped where Chromium, chromedriver or selenium are missing, or (the accessibility tests) axe-core, except
under CI (the variable CI set), where that fails: .ci/run installs them. Each page is opened once per
module, for both its checks.
"""
from __future__ import annotations

import pytest

from tests.browser import BLOCKING, axe_found, axe_script, check_page, describe, tools
from tests.conftest import SMOKE

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


def assert_accessible(result: dict) -> None:
    """No serious or critical axe violation (check_page counts them among its problems, and lists the rest
    as warnings in the test output); the page was audited."""
    axe_script()
    assert result["violations"] is not None, "the page was checked without axe"
    blocking = [describe(v) for v in result["violations"] if v["impact"] in BLOCKING]
    assert not blocking, "\n".join(blocking)


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


@pytest.fixture(scope="module")
def fixture_page(browser, fixture_report, tmp_path_factory):
    return check_page(fixture_report.html, tmp_path_factory.mktemp("browser") / "index.png", axe=axe_found())


def test_fixture_report_in_a_browser(fixture_page):
    _assert_clean(fixture_page)
    assert fixture_page["images"] >= 4
    assert {"#fig-loss", "#tbl-data"} <= set(fixture_page["links"])  # the cross-references were among the links checked
    assert "cells/mobilenet_v2-adam-s0.html" in fixture_page["links"]  # and the links to the runs' pages


def test_fixture_report_is_accessible(fixture_page):
    assert_accessible(fixture_page)


def test_the_audit_finds_what_a_reader_would_hit(browser, tmp_path):
    """axe-core itself: a link told from its text by colour alone and grey text on white are serious."""
    page = tmp_path / "page.html"
    page.write_text('<!doctype html><html lang="en"><head><title>t</title><style>body { color: #1d2330; } '
                    'a { text-decoration: none; color: #1f4e99; } .faint { color: #bbb; }</style></head><body><main>'
                    '<h1>A page</h1><p>Some text with <a href="#x">a link</a> in it and <span class="faint">faint '
                    'words</span>.</p><p id="x">x</p></main></body></html>')
    found = {v["id"]: v["impact"] for v in check_page(page, tmp_path / "page.png", axe=axe_script())["violations"]}
    assert found.get("link-in-text-block") == "serious" and found.get("color-contrast") == "serious"


@pytest.fixture(scope="module")
def smoke_page(smoke_run, tmp_path_factory):
    return check_page(smoke_run / "results" / "report" / "index.html", tmp_path_factory.mktemp("browser") / "index.png",
                      axe=axe_found())


@pytest.fixture(scope="module")
def cell_page(smoke_run, tmp_path_factory, browser):
    pages = sorted((smoke_run / "results" / "report" / "cells").glob("*.html"))
    assert pages, "no cell page in results/report/cells/"
    return check_page(pages[0], tmp_path_factory.mktemp("browser") / f"{pages[0].stem}.png", axe=axe_found())


@pytest.mark.workflow
@SMOKE
def test_smoke_report_in_a_browser(smoke_page):
    _assert_clean(smoke_page)
    assert smoke_page["images"] >= 4


@pytest.mark.workflow
@SMOKE
def test_smoke_report_is_accessible(smoke_page):
    assert_accessible(smoke_page)


@pytest.mark.workflow
@SMOKE
def test_smoke_cell_page_in_a_browser(cell_page):
    _assert_clean(cell_page)
    # the cell's curves; a kernel that inherits MPLBACKEND=Agg captures no figure, so the page shows none
    assert cell_page["images"] >= 1, f"a cell's page shows no image: the cell's curves are missing"


@pytest.mark.workflow
@SMOKE
def test_smoke_cell_page_is_accessible(cell_page):
    assert_accessible(cell_page)
