"""The report renders offline (fallback renderer) from the fixture tables."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure

from carcolor.reporting import narrative, plots, render
from carcolor.analysis import stats
from tests.fixtures import make_tables as fx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
QMD = ROOT / "report" / "index.qmd"
CELLS = list(pd.read_csv(FIXTURES / "tables" / "summary.csv")["cell"])
SYNTHETIC_NOTE = "Note: synthetic data"
TEST_PROTOCOL = "Protocol: an untouched test split."


def _quiet(_msg: str) -> None:
    pass


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def _squash(text: str) -> str:
    """Text without whitespace, so a phrase matches however the PDF broke its lines."""
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def this_checkout():
    """The report's kernel imports carcolor from this checkout, not from wherever the venv's editable
    install points (a shared venv may belong to another copy of the project)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        yield


def _render(results: Path, out: Path) -> dict:
    result = render.render_report(QMD, out, results, renderer="fallback", log=_quiet)
    return {**result, "html_text": Path(result["html"]).read_text(encoding="utf-8"),
            "pdf_text": _pdf_text(Path(result["pdf"])), "tables": narrative.load_tables(results)}


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory, this_checkout):
    """The 3-seed fixture grid (12 runs, test split), rendered once."""
    return _render(FIXTURES, tmp_path_factory.mktemp("report-synthetic"))


@pytest.fixture(scope="module")
def one_seed_report(tmp_path_factory, this_checkout):
    """The fixture grid cut to seed 0 (`grid.seeds: [0]`), presented as real DVM data, rendered once."""
    results = tmp_path_factory.mktemp("results-one-seed-dvm")
    tables = fx.only_seeds(fx.read_tables(FIXTURES / "tables"), [0])
    tables["dataset.json"] = {**tables["dataset.json"], "source": "dvm", "synthetic": False,
                              "skipped": {"unreadable": 3, "missing_colour": 12},
                              "archives": ["/data/dvm/Confirmed_fronts.zip"]}
    # a setup that differs where the method section speaks of it: ImageNet weights, no augmentation
    tables["summary"] = tables["summary"].assign(pretrained=True, hflip=False, crop_padding=0)
    fx.write_tables(tables, results / "tables")
    return _render(results, tmp_path_factory.mktemp("report-one-seed-dvm"))


# --------------------------------------------------------------------------- full render


def test_outputs_exist_and_renderer_named(synthetic_report):
    assert Path(synthetic_report["html"]).name == "index.html"
    assert Path(synthetic_report["pdf"]).name == "index.pdf"
    assert Path(synthetic_report["html"]).stat().st_size > 10_000
    assert Path(synthetic_report["pdf"]).read_bytes()[:5] == b"%PDF-"
    assert synthetic_report["renderer"].startswith("pandoc ")
    assert "offline fallback" in synthetic_report["renderer"]
    # only the two deliverables land in the output folder
    assert sorted(p.name for p in Path(synthetic_report["html"]).parent.iterdir()) == ["index.html", "index.pdf"]


def test_html_is_self_contained(synthetic_report):
    html = synthetic_report["html_text"]
    assert not re.search(r"<script[^>]+src=[\"']https?:", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert not re.search(r"<img[^>]+src=[\"'](?!data:)", html)
    images = re.findall(r"<img[^>]+src=[\"']data:image/png;base64,", html)
    assert len(images) >= 4
    assert len(re.findall(r"<figcaption", html)) == len(images)


def test_html_content(synthetic_report):
    html = synthetic_report["html_text"]
    assert SYNTHETIC_NOTE in html
    for cell in CELLS:
        assert cell in html
    assert synthetic_report["renderer"] in html
    # cross-references resolved into links, figures numbered, no raw markup left
    assert 'href="#fig-loss"' in html and ">Figure 1<" in html
    assert 'id="fig-confusion"' in html
    assert "@fig-" not in html
    assert "{python}" not in html
    assert "#|" not in html
    # tables are real tables, citations resolved, math rendered
    assert html.count("<table") >= 4
    assert "Sandler" in html and "Kingma" in html and "10.6084/m9.figshare.19586296" in html
    assert "<math" in html


def test_sentences_follow_the_config(synthetic_report, one_seed_report):
    """The training setup is stated from what the runs recorded, not assumed."""
    scratch, tuned = synthetic_report["html_text"], one_seed_report["html_text"]
    assert "trains one network from scratch" in scratch and "ImageNet weights" not in scratch
    assert "random crop after padding by 4 px and a random horizontal flip" in scratch
    assert "fine-tunes one network, starting from its ImageNet weights" in tuned and "from scratch" not in tuned
    assert "Training images are not augmented." in tuned
    assert "at 96 × 96 pixels" in scratch and "seed(s) 0, 1 and 2" in scratch and "seed(s) 0;" in tuned


def test_runs_link_to_their_pages_and_the_appendix_says_where_they_ran(synthetic_report):
    html, pdf = synthetic_report["html_text"], _squash(synthetic_report["pdf_text"])
    prov = synthetic_report["tables"].provenance
    assert 'id="sec-provenance"' in html
    for cell in CELLS:
        assert f'href="cells/{cell}.html"' in html  # relative: the copied results/report/ keeps working
        assert _squash(f"cells/{cell}.html") in pdf  # the PDF names the page
        assert _squash(f"make cell CELL={cell}") in pdf
    first = prov.iloc[0]
    for fact in (first["cpu_model"], first["host"], "2026-06-17 09:00:00", first["commit"][:10], "as committed"):
        assert fact in html and _squash(fact) in pdf, fact
    assert "every run used the packages of" in html


def test_tables_have_ids_and_figures_alt_text(synthetic_report):
    html = synthetic_report["html_text"]
    for label in ("tbl-data", "tbl-quality", "tbl-time", "tbl-verdicts", "tbl-runs", "tbl-where", "tbl-code"):
        assert f'<table id="{label}"' in html or f'id="{label}"' in html, label
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 6
    for img in images:
        alt = re.search(r'alt="([^"]*)"', img)
        assert alt and len(alt.group(1)) > 40 and not alt.group(1).startswith("Figure"), img[:200]


def test_pdf_content(synthetic_report):
    text = synthetic_report["pdf_text"]
    squashed = _squash(text)
    for cell in CELLS:
        assert cell in squashed, cell
    assert "Figure 1" in text and "Figure 6" in text
    assert _squash(synthetic_report["renderer"]) in squashed
    assert "synthetic data" in text
    assert "@fig-" not in text and "{python}" not in text and "$t_" not in text


@pytest.mark.parametrize("report", ["synthetic_report", "one_seed_report"])
def test_pdf_names_every_verdict_and_the_protocol(report, request):
    """Every row of comparisons.csv is in the PDF with its verdict, and the protocol is named."""
    rendered = request.getfixturevalue(report)
    squashed = _squash(rendered["pdf_text"])
    comparisons = rendered["tables"].comparisons
    split = narrative.score_split(rendered["tables"].summary)
    assert len(comparisons) == 14
    for _, row in comparisons.iterrows():
        assert _squash(narrative.verdict_key(row, split)) in squashed, narrative.verdict_key(row, split)
    assert _squash(TEST_PROTOCOL) in squashed
    assert _squash(narrative.verdict_summary(comparisons)) in squashed


def test_pdf_shows_verdict_kinds(synthetic_report, one_seed_report):
    three = _squash(synthetic_report["pdf_text"])
    assert all(v in three for v in ("supported", "contradicted", "inconclusive"))
    assert "±" in synthetic_report["pdf_text"]  # tables show mean ± half-width
    one = _squash(one_seed_report["pdf_text"])
    assert one.count(_squash("inconclusive: one seed")) >= 2 * 14  # the table and the sentences
    assert not re.search(r"(Adam|MobileNetV2|var\(Adam\)):(supported|contradicted)", one)


def test_real_data_has_no_synthetic_note(one_seed_report):
    assert SYNTHETIC_NOTE not in one_seed_report["html_text"]
    assert "synthetic data" not in one_seed_report["pdf_text"]
    assert "15 (3 unreadable and 12 missing colour)" in one_seed_report["html_text"]
    for cell in one_seed_report["tables"].summary["cell"]:
        assert cell in one_seed_report["html_text"]


def test_failing_cell_is_named(tmp_path):
    qmd = tmp_path / "broken.qmd"
    qmd.write_text('---\ntitle: "Broken"\n---\n\nSome text.\n\n```{python}\n#| label: fig-boom\n'
                   "x = 1\n1 / 0\n```\n")
    with pytest.raises(render.ReportCellError) as err:
        render.render_report(qmd, tmp_path / "out", FIXTURES, renderer="fallback", log=_quiet)
    msg = str(err.value)
    assert "fig-boom" in msg and "ZeroDivisionError" in msg and "line 7" in msg
    assert not (tmp_path / "out" / "index.html").exists()


def test_unknown_renderer_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        render.render_report(QMD, tmp_path, FIXTURES, renderer="latex", log=_quiet)


def test_render_command_defaults():
    from carcolor import command

    args = command.parser_for("render", render).parse_args(["--renderer", "fallback"])
    assert (args.qmd, args.results, args.out, args.renderer) == ("report/index.qmd", "results", "results/report",
                                                                 "fallback")


# --------------------------------------------------------------------------- qmd -> notebook

SMALL_QMD = """---
title: "Small"
format:
  typst:
    papersize: a4
---

Intro with `{python} n` runs and `{python} name`.

```{python}
#| label: fig-demo
#| fig-cap: "A demo figure."
n = 3
```

Plain paragraph citing [@key] and @fig-demo.

```markdown
`{python} not_code` stays literal
```
"""


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_front_matter_and_chunks():
    nb = render.qmd_to_notebook(SMALL_QMD)
    assert nb.metadata["title"] == "Small"
    assert nb.metadata["qmd"]["format"]["typst"]["papersize"] == "a4"
    setup, inline, chunk = _code(nb)
    assert setup.metadata["qmd"]["role"] == "setup"
    assert chunk.source.startswith("#| label: fig-demo\n#| fig-cap:")
    assert chunk.metadata["qmd"]["options"] == {"label": "fig-demo", "fig-cap": "A demo figure."}
    assert chunk.metadata["qmd"]["line"] == 10
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(md) == 1
    assert "[@key] and @fig-demo" in md[0].source
    assert "`{python} not_code` stays literal" in md[0].source


def test_inline_code_becomes_hidden_markdown_cell():
    nb = render.qmd_to_notebook(SMALL_QMD)
    inline = _code(nb)[1]
    assert inline.metadata["qmd"]["role"] == "inline"
    assert inline.source.startswith("#| echo: false\n")
    ns = {"n": 3, "name": narrative.synthetic_note.__class__.__name__}
    exec(render.INLINE_HELPER_SOURCE, ns)
    expr = "\n".join(line for line in inline.source.splitlines() if not line.startswith("#|"))
    shown = eval(expr, ns)
    assert shown.data == "Intro with 3 runs and function."


def test_inline_values_use_markdown_repr():
    from IPython.display import Markdown

    code = render.markdown_to_code("A `{python} m` and `{python} 1.5`!")
    ns = {"m": Markdown("**bold**")}
    exec(render.INLINE_HELPER_SOURCE, ns)
    expr = "\n".join(line for line in code.splitlines() if not line.startswith("#|"))
    assert eval(expr, ns).data == "A **bold** and 1.5!"
    assert render.markdown_to_code("no inline code, just `code`") is None


def test_bad_chunks_are_reported():
    with pytest.raises(render.RenderError, match="never closed"):
        render.qmd_to_notebook("text\n\n```{python}\nx = 1\n")
    with pytest.raises(render.RenderError, match="only python"):
        render.qmd_to_notebook("```{r}\nx <- 1\n```\n")


def _fake_executed(labels):
    nb = nbformat.v4.new_notebook()
    for opts in labels:
        cell = nbformat.v4.new_code_cell("")
        cell.metadata["qmd"] = {"options": opts}
        nb.cells.append(cell)
    return nb


def test_figures_are_numbered_and_crossrefs_resolved():
    nb = _fake_executed([{}, {"label": "fig-b", "fig-cap": "Second."}, {"label": "fig-a", "fig-cap": "First."},
                         {"label": "plain"}])
    md = ("See @fig-a, @Fig-b and mail x@fig-a.org.\n\n![png](figures/output_2_0.png)\n\n"
          "![png](figures/output_1_0.png)\n\n![png](figures/output_3_0.png)\n")
    md, numbers = render.number_figures(md, nb)
    assert numbers == {"fig-a": 1, "fig-b": 2}
    assert "![**Figure 1:** First.](figures/output_2_0.png){#fig-a width=100%}" in md
    assert "![**Figure 2:** Second.](figures/output_1_0.png){#fig-b width=100%}" in md
    assert "![](figures/output_3_0.png){width=100%}" in md
    warnings = []
    md = render.resolve_crossrefs(md + "\nAnd @fig-missing.", numbers, log=warnings.append)
    assert "See [Figure 1](#fig-a), [Figure 2](#fig-b) and mail x@fig-a.org." in md
    assert "?fig-missing?" in md and warnings


def test_table_captions_are_numbered():
    md = ("| a |\n|--:|\n| 1 |\n\n: First table.\n\nText\n\n: not a caption\n\n| b |\n|---|\n| 2 |\n\n"
          ": Second. {#tbl-second}\n\nSee @tbl-second.\n")
    numbers = {}
    out = render.resolve_crossrefs(render.number_tables(md, numbers), numbers, log=_quiet)
    assert ": **Table 1:** First table." in out
    assert ": **Table 2:** Second. {#tbl-second}" in out  # pandoc gives the table the id
    assert "See [Table 2](#tbl-second)." in out and numbers == {"tbl-second": 2}
    assert ": not a caption" in out


def test_table_labels_are_quartos():
    assert narrative.md_table(pd.DataFrame({"a": [1]}), "Cap.", "tbl-a").rstrip().endswith(": Cap. {#tbl-a}")
    with pytest.raises(ValueError, match="tbl-"):
        narrative.md_table(pd.DataFrame({"a": [1]}), "Cap.", "table-a")


# --------------------------------------------------------------------------- figures on partial grids


def _figures(t: dict) -> list:
    return [
        plots.loss_curves(t["epochs"]),
        plots.f1_curves(t["epochs"]),
        plots.time_comparison(t["summary"]),
        plots.time_breakdown(t["epochs"]),
        plots.per_class_f1(t["per_class"]),
        plots.confusion_matrix(t["confusion"], *narrative.best_pair(t["summary"])),
    ]


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)])
def test_plots_on_partial_grid(seeds):
    tables = fx.only_seeds(fx.read_tables(FIXTURES / "tables"), seeds)
    adam = {name: frame[frame["optimizer"] == "adam"] for name, frame in tables.items()
            if isinstance(frame, pd.DataFrame) and "optimizer" in frame.columns}
    assert all(isinstance(f, Figure) for f in _figures(adam))
    with pytest.raises(ValueError, match="no confusion rows for MobileNetV2 \\+ Adamax"):
        plots.confusion_matrix(adam["confusion"], "mobilenet_v2", "adamax")


def test_bands_are_means_over_seeds():
    tables = fx.read_tables(FIXTURES / "tables")
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


# --------------------------------------------------------------------------- quarto path (with a stand-in)

FAKE_QUARTO = """#!/bin/sh
# stand-in for quarto render: like Quarto, it writes under the output folder (--output-dir, else the
# project's output-dir) keeping the input's sub-folder (report/index.html), and empties --output-dir first
if [ "$1" = "--version" ]; then echo 1.6.40; exit 0; fi
echo "$@" >> "$PROJECT/quarto-args"
qmd="$2"; fmt="$4"; out="$PROJECT/results"
if [ "$5" = "--output-dir" ]; then out="$6"; rm -rf "$out"; fi
dest="$out/report"
mkdir -p "$dest"
case "$fmt" in
  html) printf '<html>%s %s</html>' "$CARCOLOR_RENDERER" "$CARCOLOR_RESULTS" > "$dest/index.html" ;;
  typst) printf '%%PDF-1.7 fake' > "$dest/index.pdf" ;;
  *) exit 3 ;;
esac
"""


def test_quarto_outputs_are_moved_into_out_dir(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "report").mkdir(parents=True)
    shutil.copy(ROOT / "_quarto.yml", project / "_quarto.yml")
    qmd = project / "report" / "index.qmd"
    qmd.write_text("---\ntitle: x\n---\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "quarto"
    fake.write_text(FAKE_QUARTO)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("PROJECT", str(project))
    out = project / "results" / "report"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "a.html").write_text("a cell's page")
    result = render.render_report(qmd, out, FIXTURES, log=_quiet)  # auto picks quarto
    assert result["renderer"] == "Quarto 1.6.40"
    assert sorted(p.name for p in out.iterdir()) == ["cells", "index.html", "index.pdf"]  # the pages survive
    assert not (project / "results" / ".report.build").exists()
    args = (project / "quarto-args").read_text()
    assert args.count("--no-execute-daemon") == 2  # a kept kernel would ignore CARCOLOR_RESULTS
    html = (out / "index.html").read_text()
    assert "Quarto 1.6.40" in html and str(FIXTURES.resolve()) in html


def test_a_plain_quarto_render_writes_where_the_workflow_does():
    """Quarto keeps the input's sub-folder under the project's output-dir: results + report/ = results/report."""
    import yaml

    from carcolor import workflow
    project = yaml.safe_load((ROOT / "_quarto.yml").read_text())["project"]
    (source,) = project["render"]
    written = Path(project["output-dir"]) / Path(source).parent / "index.html"
    assert str(written) == workflow.REPORT[0]
