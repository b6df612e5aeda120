"""The smoke report rendered by real Quarto (marker `quarto`), two ways, each once per module:

* through the workflow: `snakemake --forcerun render_report` in a copy of the smoke run, run with the venv's
  `snakemake` by its path and the venv not on PATH (an environment that is not activated);
* by a plain `quarto render` in another copy, as a user with Quarto and the environment would.

Each must exit 0 with no warning line; number and resolve every figure, table and cross-reference; have one
References section, filled; pass the browser check and the accessibility audit; state every verdict in the
PDF; and show the numbers the offline renderer shows (its HTML is the smoke run's own, rendered offline).

Quarto is $CARCOLOR_QUARTO (the launcher .ci/run installs with ../shared/tools/quarto/install.sh and does
not put on PATH, so every other test renders as a pip user's machine does), else the `quarto` on PATH; its
folder goes first on PATH for these subprocesses only. Without Quarto the tier is skipped, or fails under CI.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from carcolor.reporting import render, results, verdicts
from tests.browser import axe_found, check_page
from tests.conftest import SMOKE, pdf_text
from tests.flow import REPO
from tests.test_browser import _assert_clean, assert_accessible
from tests.test_render import FIGURES, TABLES, _squash

pytestmark = [pytest.mark.quarto, pytest.mark.workflow, SMOKE]

QUARTO_VARIABLE = "CARCOLOR_QUARTO"
VENV_BIN = Path(sys.executable).parent
# what the test process's environment may hold that a user's shell would not
RENDER_VARIABLES = (render.CHOICE_VARIABLE, results.RESULTS_VARIABLE, results.RENDERED_WITH_VARIABLE, "QUARTO_PYTHON",
                    "JUPYTER_PATH", "VIRTUAL_ENV", "PYTHONPATH")
WARNING = re.compile(r"\bwarn(ing)?\b|without encryption", re.I)


# What .ci/run installs Quarto with, where the machine has it beside the checkout.
INSTALLER = REPO.parent / "shared" / "tools" / "quarto" / "install.sh"


def quarto_launcher() -> Path:
    """$CARCOLOR_QUARTO, else the `quarto` on PATH; else skip, or fail where CI is set and .ci/run had
    Quarto's installer to install it with."""
    named = os.environ.get(QUARTO_VARIABLE)
    found = Path(named) if named else Path(shutil.which("quarto") or "quarto")
    if not found.is_file():
        msg = (f"the Quarto tier needs Quarto: {QUARTO_VARIABLE}={named} is no file" if named else
               f"the Quarto tier needs Quarto: set {QUARTO_VARIABLE} to its launcher, or put quarto on PATH")
        if os.environ.get("CI") and INSTALLER.is_file():
            pytest.fail(f"{msg} (CI is set and {INSTALLER} exists, so this fails instead of skipping)", pytrace=False)
        pytest.skip(f"{msg} (and {INSTALLER} is missing)" if os.environ.get("CI") else msg)
    return found


def user_env(quarto: Path, *, activated: bool, checkout: Path | None = None) -> dict:
    """A user's shell: Quarto's folder first on PATH, the venv's only where it is activated (``checkout``'s
    carcolor importable, as an editable install of it would make it)."""
    env = {k: v for k, v in os.environ.items() if k not in RENDER_VARIABLES}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != VENV_BIN.resolve()]
    env["PATH"] = os.pathsep.join([str(quarto.parent), *([str(VENV_BIN)] if activated else []), *path])
    if checkout:
        env["PYTHONPATH"] = str(checkout)
    return env


def _copy(smoke_run: Path, dest: Path) -> Path:
    shutil.copytree(smoke_run, dest, symlinks=True)
    return dest


def _rendered(copy: Path, proc: subprocess.CompletedProcess, output: str) -> SimpleNamespace:
    report = copy / "results" / "report"
    html, pdf = report / "index.html", report / "index.pdf"
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return SimpleNamespace(copy=copy, output=output, html=html, pdf=pdf, html_text=html.read_text(encoding="utf-8"),
                           pdf_text=pdf_text(pdf))


class _Text(HTMLParser):
    """The text of a page's body outside the elements named ``skipped`` (scripts and styles at least)."""

    def __init__(self, skipped=()):
        super().__init__(convert_charrefs=True)
        self.skipped = {"script", "style", *skipped}
        self.parts, self.skipping = [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.skipped or self.skipping:
            self.skipping.append(tag)

    def handle_endtag(self, tag):
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def page_text(html: str, skipped=()) -> str:
    """The text a reader sees in the page's body, its spaces normalised."""
    parser = _Text(skipped)
    parser.feed(html.split("<body", 1)[1])
    return " ".join(" ".join(parser.parts).split())


def numbers(html: str) -> list[str]:
    """Every number of the page's text, in order, less what differs by design: the table of contents
    (Quarto's chrome), math (each pandoc writes its MathML) and the renderer's name and version."""
    text = re.sub(r"Rendered with (.+?) on ", "Rendered with a renderer on ", page_text(html, {"math", "nav"}))
    return re.findall(r"[−+-]?\d[\d,]*(?:\.\d+)?", text)


@pytest.fixture(scope="module")
def through_the_workflow(smoke_run, tmp_path_factory):
    """`.venv/bin/snakemake --forcerun render_report` with the venv not on PATH and Quarto on it; the output
    that counts is the job's log (Quarto's and the render step's own lines)."""
    quarto = quarto_launcher()
    copy = _copy(smoke_run, tmp_path_factory.mktemp("quarto-workflow") / "carcolor")
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "--cores", "2", "--configfile", "tests/smoke.yaml",
                           "--forcerun", "render_report"], cwd=copy, capture_output=True, text=True,
                          env=user_env(quarto, activated=False))
    log = copy / "results" / "logs" / "render_report.log"
    return _rendered(copy, proc, log.read_text() if log.is_file() else "")


@pytest.fixture(scope="module")
def by_quarto_render(smoke_run, tmp_path_factory):
    """A plain `quarto render` from the checkout, the environment activated."""
    quarto = quarto_launcher()
    copy = _copy(smoke_run, tmp_path_factory.mktemp("quarto-plain") / "carcolor")
    proc = subprocess.run([str(quarto), "render"], cwd=copy, capture_output=True, text=True,
                          env=user_env(quarto, activated=True, checkout=copy))
    return _rendered(copy, proc, proc.stdout + proc.stderr)


@pytest.fixture(params=["through_the_workflow", "by_quarto_render"])
def rendered(request):
    return request.getfixturevalue(request.param)


def test_it_renders_with_quarto_and_no_warning(rendered):
    assert re.search(r"Rendered with Quarto 1\.\d+\.\d+", page_text(rendered.html_text))  # from a plain render too
    assert re.search(r"Rendered with\s*Quarto\s*1\.\d+\.\d+", rendered.pdf_text)
    warnings = [line for line in rendered.output.splitlines() if WARNING.search(line)]
    assert not warnings, "\n".join(warnings)


def test_every_figure_table_and_crossreference_is_numbered_and_resolved(rendered):
    html, pdf = rendered.html_text, rendered.pdf_text
    for n, label in enumerate(FIGURES, 1):
        assert re.search(rf'id="{label}"', html) and re.search(rf"Figure\s*{n}\s*:", html), label
        assert re.search(rf'href="#{label}"[^>]*>Figure\s*{n}<', html), label
        assert re.search(rf"Figure\s*{n}\s*:", pdf), label
    for n, label in enumerate(TABLES, 1):
        assert re.search(rf'id="{label}"', html) and re.search(rf"Table\s*{n}\s*:", html), label
        assert re.search(rf'href="#{label}"[^>]*>Table\s*{n}<', html), label
        assert re.search(rf"Table\s*{n}\s*:", pdf), label
    text = page_text(html)
    for leftover in ("?@", "@fig-", "@tbl-", "?fig-", "?tbl-", "{python}", "#|"):
        assert leftover not in text and leftover not in pdf, leftover


def test_one_references_section_filled(rendered):
    html, pdf = rendered.html_text, rendered.pdf_text
    assert len(re.findall(r"<h\d[^>]*>\s*(?:<span[^>]*>[^<]*</span>\s*)?References\s*</h\d>", html)) == 1
    entries = re.findall(r'<div id="ref-[^"]+" class="csl-entry"', html)
    assert len(entries) == 5, entries
    assert sum(line.strip() == "References" for line in pdf.splitlines()) == 1
    for author in ("Sandler, Mark", "Howard, Andrew G.", "Kingma, Diederik P.", "Huang, Jingmin"):
        assert author in html and author in pdf, author


def test_every_verdict_is_in_the_pdf(rendered):
    squashed = _squash(rendered.pdf_text)
    comparisons = results.load_tables(rendered.copy / "results").comparisons
    assert len(comparisons) == 14
    for _, row in comparisons.iterrows():
        v = verdicts.verdict(row)
        assert _squash(f"{v.held}, {v.metric}, {v.contrast}: {v.label}") in squashed, (v.held, v.metric)
    assert "Syntheticdata" in squashed  # the callout's title, in its box


def test_page_paths_are_whole_in_the_pdf(rendered):
    flat = " ".join(rendered.pdf_text.split())
    for page in sorted((rendered.copy / "results" / "report" / "cells").glob("*.html")):
        assert f"cells/{page.name}" in flat, page.name


@pytest.fixture(scope="module")
def browsed(through_the_workflow, by_quarto_render, tmp_path_factory):
    shots = tmp_path_factory.mktemp("quarto-browser")
    return {name: check_page(r.html, shots / f"{name}.png", axe=axe_found())
            for name, r in (("through_the_workflow", through_the_workflow), ("by_quarto_render", by_quarto_render))}


@pytest.mark.parametrize("way", ["through_the_workflow", "by_quarto_render"])
def test_quartos_html_in_a_browser(browsed, way):
    _assert_clean(browsed[way])
    assert browsed[way]["images"] >= 6


@pytest.mark.parametrize("way", ["through_the_workflow", "by_quarto_render"])
def test_quartos_html_is_accessible(browsed, way):
    assert_accessible(browsed[way])


# --------------------------------------------------------------------------- parity with the offline renderer


def test_the_numbers_are_the_offline_renderers(rendered, smoke_run):
    offline = (smoke_run / "results" / "report" / "index.html").read_text(encoding="utf-8")
    assert "(offline fallback)" in offline, "the smoke run's report was not rendered offline"
    ours, theirs = numbers(rendered.html_text), numbers(offline)
    missing, extra = Counter(theirs) - Counter(ours), Counter(ours) - Counter(theirs)
    assert not missing and not extra, f"only offline: {dict(missing)}; only Quarto: {dict(extra)}"
    assert ours == theirs  # and in the same order
    assert len(ours) > 500
