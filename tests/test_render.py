"""The report rendered (carcolor.reporting.render): the fixture tables' report, rendered once for the session
by the offline renderer (tests/conftest.py `fixture_report`), checked for what a reader must find in the
HTML and in the PDF; the render command; the Quarto driver with a stand-in Quarto, and where the real one
writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from carcolor import layout
from carcolor.analysis import stats
from carcolor.reporting import fmt, offline, pairs, plots, quarto, render, verdicts
from tests.conftest import FIXTURE_RESULTS
from tests.fixtures import make_tables as fx

ROOT = Path(__file__).resolve().parents[1]
QMD = ROOT / "report" / "index.qmd"
LABELS = re.findall(r"^#\| label: ((?:fig|tbl)-[\w-]+)|\"(tbl-[\w-]+)\"\)\)", QMD.read_text(), re.M)
FIGURES = [f for f, _ in LABELS if f]
TABLES = [t for _, t in LABELS if t]


def _squash(text: str) -> str:
    """Text without whitespace, so a phrase matches however the PDF broke its lines."""
    return re.sub(r"\s+", "", text)


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------- the rendered fixture report


def test_outputs_and_renderer(fixture_report):
    assert fixture_report.written == ["report", "report/index.html", "report/index.pdf"]  # no build folder left
    assert fixture_report.html.stat().st_size > 10_000 and fixture_report.pdf.read_bytes()[:5] == b"%PDF-"
    assert re.fullmatch(r"pandoc [\d.]+ \+ Typst [\d.]+ \(offline fallback\)", fixture_report.renderer)
    assert fixture_report.renderer in fixture_report.html_text
    assert _squash(fixture_report.renderer) in _squash(fixture_report.pdf_text)


def test_html_is_self_contained(fixture_report):
    html = fixture_report.html_text
    assert not re.search(r"<script[^>]+src=[\"']https?:", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert not re.search(r"<img[^>]+src=[\"'](?!data:)", html)
    assert len(re.findall(r"<img[^>]+src=[\"']data:image/png;base64,", html)) == len(FIGURES) == 6
    assert "<math" in html and "Sandler" in html and "Kingma" in html and "10.6084/m9.figshare.19586296" in html


def test_every_figure_and_table_is_numbered_referenced_and_resolved(fixture_report):
    html, pdf = fixture_report.html_text, fixture_report.pdf_text
    assert len(TABLES) == 7
    for n, label in enumerate(FIGURES, 1):
        assert f'id="{label}"' in html and f"<strong>Figure {n}:</strong>" in html, label
        assert f'href="#{label}">Figure {n}</a>' in html, label  # the text refers to each figure
        assert f"Figure {n}:" in pdf
    for n, label in enumerate(TABLES, 1):
        assert f'<table id="{label}"' in html and f"<strong>Table {n}:</strong>" in html, label
        assert f'href="#{label}">Table {n}</a>' in html, label  # and to each table
        assert f"Table {n}:" in pdf
    assert len(re.findall(r"<figcaption", html)) == len(FIGURES)
    for leftover in ("@fig-", "@tbl-", "?fig-", "?tbl-", "{python}", "#|", "$t_"):
        assert leftover not in html and leftover not in pdf, leftover


def test_figures_have_alt_text(fixture_report):
    images = re.findall(r"<img [^>]*>", fixture_report.html_text)
    assert len(images) == len(FIGURES)
    for img in images:
        alt = re.search(r'alt="([^"]*)"', img)
        assert alt and len(alt.group(1)) > 40 and not alt.group(1).startswith("Figure"), img[:200]


def test_numbers_of_the_tables_are_in_both(fixture_report):
    html, pdf = fixture_report.html_text, _squash(fixture_report.pdf_text)
    for fact in ("12 runs", "0.770 ± 0.065", "0:26:09", "1:54:34 / 1:38:34 = 1.16×", "t = 4.30", "1,320"):
        assert fact in html and _squash(fact) in pdf, fact

def test_the_date_citations_and_landmark_the_document_asks_for(fixture_report):
    """date-format: long, the CSL file's citation style (the same under Quarto's pandoc), a main landmark."""
    html, pdf = fixture_report.html_text, _squash(fixture_report.pdf_text)
    today = fmt.long_date(date.today())
    assert f'<p class="date">{today}</p>' in html and _squash(today) in pdf
    assert re.search(r"Huang et al\.(</span>)? 2022b</a>, <a [^>]*>2022a</a>", html)
    assert _squash("(Huang et al. 2022b, 2022a)") in pdf
    assert html.count("<main>") == 1 and html.index("<main>") < html.index('id="title-block-header"')


def test_what_the_offline_renderer_cannot_do_is_named(tmp_path):
    with pytest.raises(render.RenderError, match="date-format 'short' is not one the offline renderer writes: "
                                                 "use long or iso"):
        offline._date("today", "short")
    assert offline._date("today", "iso") == date.today().isoformat() and offline._date("2026-01-02") == "2026-01-02"
    with pytest.raises(render.RenderError, match=r"the \.qmd's citation style .*missing\.csl not found"):
        offline._document_arguments({"bibliography": "references.bib", "csl": "missing.csl"}, "html", QMD.parent)


def test_the_synthetic_data_note_is_a_box_in_both(fixture_report):
    """The .qmd's callout: a titled box in the HTML (callout.lua, style.css) and in the PDF (the report's
    callouts.lua and typst-style.typ, which Quarto's PDF uses too)."""
    html = fixture_report.html_text
    assert re.search(r'<div class="callout callout-warning">\s*<div class="callout-title">\s*Synthetic data', html)
    assert 'title="Synthetic data"' not in html  # a title, not a tooltip
    assert "Synthetic data" in fixture_report.pdf_text and "generated by the pipeline" in fixture_report.pdf_text


def test_every_comparison_is_in_the_pdf_with_its_verdict(fixture_report):
    squashed = _squash(fixture_report.pdf_text)
    comparisons = fixture_report.tables.comparisons
    assert len(comparisons) == 14
    for _, row in comparisons.iterrows():
        v = verdicts.verdict(row)
        assert _squash(f"{v.held}, {v.metric}, {v.contrast}: {v.label}") in squashed, (v.held, v.metric)
        assert _squash(v.interval) in squashed
    assert all(word in squashed for word in ("supported", "contradicted", "inconclusive"))
    assert "Protocol:anuntouchedtestsplit." in squashed


def test_runs_link_to_their_pages_and_the_appendix_says_where_they_ran(fixture_report):
    html, pdf = fixture_report.html_text, _squash(fixture_report.pdf_text)
    prov = fixture_report.tables.provenance
    assert 'id="sec-provenance"' in html and 'id="sec-runs"' in html
    for cell in prov["cell"]:
        assert f'href="{layout.page_path(cell)}"' in html  # relative: the copied results/report/ keeps working
        assert _squash(layout.page_path(cell)) in pdf  # the PDF names the page
        assert _squash(f"make cell CELL={cell}") in pdf
    first = prov.iloc[0]
    for fact in (first["cpu_model"], first["host"], "2026-06-17 09:00:00", first["commit"][:10], "as committed"):
        assert fact in html and _squash(fact) in pdf, fact


# --------------------------------------------------------------------------- rendering: errors and the command


def test_failing_chunk_is_named(tmp_path):
    broken = tmp_path / "broken.qmd"
    broken.write_text('---\ntitle: "Broken"\n---\n\nSome text.\n\n```{python}\n#| label: fig-boom\n'
                      "x = 1\n1 / 0\n```\n")
    with pytest.raises(render.ReportChunkError) as err:
        render.render_report(broken, tmp_path / "out", FIXTURE_RESULTS, renderer="fallback", log=_quiet)
    msg = str(err.value)
    assert "chunk 'fig-boom'" in msg and "ZeroDivisionError" in msg and "line 7" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.qmd"]  # no output, no build folder


def test_unknown_renderer_and_missing_source(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="renderer is 'latex': choose one of auto, quarto, fallback"):
        render.render_report(QMD, tmp_path, FIXTURE_RESULTS, renderer="latex", log=_quiet)
    monkeypatch.setenv(render.CHOICE_VARIABLE, "latex")
    with pytest.raises(ValueError, match=r"\$CARCOLOR_RENDER is 'latex': choose one of auto, quarto, fallback"):
        render.render_report(QMD, tmp_path, FIXTURE_RESULTS, log=_quiet)
    with pytest.raises(render.RenderError, match="not found"):
        render.render_report(tmp_path / "none.qmd", tmp_path, FIXTURE_RESULTS, log=_quiet)


def test_render_command_defaults():
    from carcolor import cli, command

    args = command.parser_for("render", render).parse_args(["--renderer", "fallback"])
    assert (args.qmd, args.results, args.out, args.renderer) == ("report/index.qmd", "results", "results/report",
                                                                 "fallback")
    assert command.parser_for("render", render).parse_args([]).renderer is None  # then $CARCOLOR_RENDER, else auto
    assert cli.COMMANDS["render"][0] == render.__name__
    assert render.OUTPUTS == {"html": "index.html", "pdf": "index.pdf"}


# --------------------------------------------------------------------------- figures on partial grids


def _figures(t: dict) -> list:
    return [
        plots.loss_curves(t["epochs"]),
        plots.f1_curves(t["epochs"]),
        plots.time_comparison(t["summary"]),
        plots.time_breakdown(t["epochs"]),
        plots.per_class_f1(t["per_class"]),
        plots.confusion_matrix(t["confusion"], *pairs.best_pair(t["summary"])),
    ]


@pytest.mark.parametrize("cut", ["3 seeds", "one seed", "tied", "no test split"])
def test_plots_on_partial_grids(cut):
    tables = fx.read_tables(FIXTURE_RESULTS / "tables")
    tables = {"3 seeds": tables, "one seed": fx.only_seeds(tables, [0]), "tied": fx.tied(tables),
              "no test split": fx.without_test_split(tables)}[cut]
    adam = {name: frame[frame["optimizer"] == "adam"] for name, frame in tables.items()
            if isinstance(frame, pd.DataFrame) and "optimizer" in frame.columns}
    assert all(isinstance(f, Figure) for f in _figures(adam))
    with pytest.raises(ValueError, match="no confusion rows for MobileNetV2 \\+ Adamax"):
        plots.confusion_matrix(adam["confusion"], "mobilenet_v2", "adamax")


def test_bands_are_means_over_seeds():
    tables = fx.read_tables(FIXTURE_RESULTS / "tables")
    bands = plots.epoch_bands(tables["epochs"], "val", "loss")
    assert len(bands) == 4 * 6 and set(bands["n"]) == {3}
    runs = tables["epochs"][(tables["epochs"]["cell"].str.startswith("mobilenet_v1-adam-"))
                            & (tables["epochs"]["split"] == "val") & (tables["epochs"]["epoch"] == 2)]
    row = bands[(bands["arch"] == "mobilenet_v1") & (bands["optimizer"] == "adam") & (bands["epoch"] == 2)].iloc[0]
    assert (row["mean"], row["half"]) == pytest.approx(stats.mean_band(runs["loss"]))
    per_colour = plots.per_class_bands(tables["per_class"])
    assert len(per_colour) == 4 * 11 and per_colour["half"].notna().all()
    one = plots.per_class_bands(fx.only_seeds(tables, [0])["per_class"])
    assert one["half"].isna().all()


# --------------------------------------------------------------------------- the Quarto driver

FAKE_QUARTO = """#!/bin/sh
# stand-in for quarto render: like Quarto, it writes under the output folder (--output-dir, else the
# project's output-dir) keeping the input's sub-folder (report/index.html), and empties --output-dir first
if [ "$1" = "--version" ]; then echo 1.6.40; exit 0; fi
echo "$@" >> "$PROJECT/quarto-args"
printf '%s\n%s\n%s\n' "$(pwd)" "$QUARTO_PYTHON" "$JUPYTER_PATH" > "$PROJECT/quarto-env"
qmd="$2"; fmt="$4"; out="$PROJECT/results"
if [ "$fmt" = "$FAIL_FORMAT" ]; then echo "ERROR: what Quarto says went wrong" >&2; exit 1; fi
if [ "$5" = "--output-dir" ]; then out="$6"; rm -rf "$out"; fi
dest="$out/report"
mkdir -p "$dest"
case "$fmt" in
  html) printf '<html>%s %s</html>' "$CARCOLOR_RENDERED_WITH" "$CARCOLOR_RESULTS" > "$dest/index.html" ;;
  typst) printf '%%PDF-1.7 fake' > "$dest/index.pdf" ;;
  *) exit 3 ;;
esac
"""


def _project(tmp_path: Path, monkeypatch) -> Path:
    """A project with this checkout's _quarto.yml and a stand-in quarto first on PATH."""
    project = tmp_path / "project"
    (project / "report").mkdir(parents=True)
    shutil.copy(ROOT / "_quarto.yml", project / "_quarto.yml")
    (project / "report" / "index.qmd").write_text("---\ntitle: x\n---\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "quarto").write_text(FAKE_QUARTO)
    (bin_dir / "quarto").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PROJECT", str(project))
    return project


def test_quarto_outputs_are_moved_into_out_dir(tmp_path, monkeypatch):
    project = _project(tmp_path, monkeypatch)
    out = project / "results" / "report"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "a.html").write_text("a cell's page")
    result = render.render_report(project / "report" / "index.qmd", out, FIXTURE_RESULTS, log=_quiet)  # auto: quarto
    assert result["renderer"] == "Quarto 1.6.40"
    assert sorted(p.name for p in out.iterdir()) == ["cells", "index.html", "index.pdf"]  # the pages survive
    assert not (project / "results" / ".report.build").exists()
    args = (project / "quarto-args").read_text()
    assert args.count("--no-execute-daemon") == 2  # a kept kernel would ignore CARCOLOR_RESULTS
    html = (out / "index.html").read_text()
    assert "Quarto 1.6.40" in html and str(FIXTURE_RESULTS.resolve()) in html
    # run from the project, with this interpreter for Jupyter (an unactivated venv), its quiet kernel first
    cwd, python, jupyter_path = (project / "quarto-env").read_text().splitlines()
    assert (Path(cwd), python) == (project, sys.executable)
    assert jupyter_path.split(os.pathsep)[0] == str(quarto.KERNELSPECS)


def test_a_failed_quarto_render_ends_in_one_line_and_keeps_the_last_report(tmp_path, monkeypatch, capfd):
    from carcolor import command

    project = _project(tmp_path, monkeypatch)
    out = project / "results" / "report"
    out.mkdir(parents=True)
    (out / "index.html").write_text("the last report")
    monkeypatch.setenv("FAIL_FORMAT", "typst")
    monkeypatch.chdir(project)
    assert command.main(render.__name__, ["--renderer", "quarto"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert "ERROR: what Quarto says went wrong" in err  # Quarto's own output, for the log
    assert err[-1] == ("carcolor render: quarto render index.qmd --to typst failed (exit status 1); Quarto's "
                       "output above says why")
    assert (out / "index.html").read_text() == "the last report" and not (out / "index.pdf").exists()


def test_the_renderer_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no quarto
    monkeypatch.delenv(render.CHOICE_VARIABLE, raising=False)
    assert render.choose() == "fallback" and render.choose("quarto") == "quarto"
    monkeypatch.setenv(render.CHOICE_VARIABLE, "quarto")  # a forced Quarto that is missing: one line, what to do
    with pytest.raises(render.RenderError, match=r"^Quarto was asked for, but there is no `quarto` on PATH: install "
                                                 r"Quarto .* or render without it: --renderer fallback$"):
        render.render_report(QMD, tmp_path / "out", FIXTURE_RESULTS, log=_quiet)
    assert render.choose("fallback") == "fallback"  # the option wins over the variable
    _project(tmp_path, monkeypatch)
    monkeypatch.setenv(render.CHOICE_VARIABLE, "fallback")
    assert render.choose() == "fallback" and render.choose("auto") == "quarto"


def test_quartos_kernel_is_this_interpreter_without_the_tcp_warning():
    """The kernelspec first on Quarto's JUPYTER_PATH, by the driver and by _environment for a plain render."""
    import json

    spec = json.loads((quarto.KERNELSPECS / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][:3] == ["python", "-m", "ipykernel_launcher"]  # jupyter_client runs its own interpreter
    assert "--IPKernelApp.log_level=ERROR" in spec["argv"] and spec["language"] == "python"
    environment = dict(line.split("=", 1) for line in (ROOT / "_environment").read_text().splitlines()
                       if line and not line.startswith("#"))
    assert (QMD.parent / environment["JUPYTER_PATH"]).resolve() == quarto.KERNELSPECS.resolve()  # from report/


def test_quarto_that_writes_elsewhere_is_an_error(tmp_path, monkeypatch):
    project = _project(tmp_path, monkeypatch)
    (project / "_quarto.yml").unlink()  # no project: the driver expects <build>/html/index.html
    with pytest.raises(render.RenderError, match=r"did not write .*html/index\.html"):
        render.render_report(project / "report" / "index.qmd", project / "out", FIXTURE_RESULTS, log=_quiet)
    assert not (project / "out").exists()


def test_a_plain_quarto_render_writes_where_the_workflow_does():
    """Quarto keeps the input's sub-folder under the project's output-dir: results + report/ = results/report."""
    import yaml

    from carcolor import workflow
    project = yaml.safe_load((ROOT / "_quarto.yml").read_text())["project"]
    (source,) = project["render"]
    assert Path(source) == QMD.relative_to(ROOT)
    assert str(quarto.output_path(QMD, Path(project["output-dir"]), ".html")) == workflow.REPORT[0]


def test_the_real_quarto_writes_where_the_driver_expects(tmp_path):
    """`quarto render report/x.qmd --output-dir BUILD` in a project writes BUILD/report/x.html (no code: no kernel).
    Quarto as the Quarto tier finds it (skipped without, failing under CI where it could be installed)."""
    from tests.test_quarto import quarto_launcher

    launcher = quarto_launcher()
    (tmp_path / "report").mkdir()
    shutil.copy(ROOT / "_quarto.yml", tmp_path / "_quarto.yml")
    page = tmp_path / "report" / "index.qmd"
    page.write_text("---\ntitle: t\n---\n\nText.\n")
    build = tmp_path / "build"
    subprocess.run([str(launcher), "render", str(page), "--to", "html", "--output-dir", str(build)], check=True,
                   capture_output=True, cwd=tmp_path)
    assert quarto.output_path(page, build, ".html") == build / "report" / "index.html"
    assert (build / "report" / "index.html").is_file()
