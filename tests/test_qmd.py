"""The offline renderer's pieces: a .qmd read into a notebook (carcolor.reporting.qmd), inline values as
Quarto writes them, figures and tables numbered and cross-referenced (carcolor.reporting.offline)."""

from __future__ import annotations

import nbformat
import pytest
from IPython.display import Markdown

from carcolor.reporting import offline, qmd

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


def _shown(code: str, **values) -> str:
    """What the inline helper displays for the code markdown_to_code made, with these values."""
    namespace = dict(values)
    exec(qmd.INLINE_HELPER_SOURCE, namespace)
    expr = "\n".join(line for line in code.splitlines() if not line.startswith("#|"))
    return eval(expr, namespace).data


def test_front_matter_and_chunks():
    nb = qmd.qmd_to_notebook(SMALL_QMD)
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


def test_inline_code_becomes_a_hidden_code_cell():
    inline = _code(qmd.qmd_to_notebook(SMALL_QMD))[1]
    assert inline.metadata["qmd"]["role"] == "inline" and inline.source.startswith("#| echo: false\n")
    assert _shown(inline.source, n=3, name="MobileNetV2") == "Intro with 3 runs and MobileNetV2."
    assert qmd.markdown_to_code("no inline code, just `code`") is None


def test_inline_values_as_quarto_writes_them():
    """Markdown as Markdown; text escaped so it reads literally (Quarto escapes the same characters); numbers as str."""
    code = qmd.markdown_to_code("A `{python} m`, `{python} t`, `{python} x` and `{python} 1.5`!")
    shown = _shown(code, m=Markdown("**bold**"), t="*not* [a link](x) + 1.5 (a)", x=12)
    assert shown == r"A **bold**, \*not\* \[a link\]\(x\) \+ 1\.5 \(a\), 12 and 1.5!"
    assert set(qmd.MARKDOWN_SPECIALS) == set("\\`*_{}[]()>#+-.!")


def test_bad_chunks_are_reported():
    with pytest.raises(qmd.RenderError, match="never closed"):
        qmd.qmd_to_notebook("text\n\n```{python}\nx = 1\n")
    with pytest.raises(qmd.RenderError, match="only python"):
        qmd.qmd_to_notebook("```{r}\nx <- 1\n```\n")


def test_a_notebook_cell_is_described_by_its_chunk():
    nb = qmd.qmd_to_notebook(SMALL_QMD)
    assert qmd.describe(nb.cells[1], 1) == "inline code in the text at line 8 of the .qmd"
    assert qmd.describe(nb.cells[2], 2) == "chunk 'fig-demo' (line 10 of the .qmd)"


def _fake_executed(labels):
    nb = nbformat.v4.new_notebook()
    for opts in labels:
        nb_cell = nbformat.v4.new_code_cell("")
        nb_cell.metadata["qmd"] = {"options": opts}
        nb.cells.append(nb_cell)
    return nb


def test_figures_are_numbered_and_crossrefs_resolved():
    nb = _fake_executed([{}, {"label": "fig-b", "fig-cap": "Second."}, {"label": "fig-a", "fig-cap": "First."},
                         {"label": "plain"}])
    md = ("See @fig-a, @Fig-b and mail x@fig-a.org.\n\n![png](figures/output_2_0.png)\n\n"
          "![png](figures/output_1_0.png)\n\n![png](figures/output_3_0.png)\n")
    md, numbers = offline.number_figures(md, nb)
    assert numbers == {"fig-a": 1, "fig-b": 2}
    assert "![**Figure 1:** First.](figures/output_2_0.png){#fig-a width=100%}" in md
    assert "![**Figure 2:** Second.](figures/output_1_0.png){#fig-b width=100%}" in md
    assert "![](figures/output_3_0.png){width=100%}" in md
    warnings = []
    md = offline.resolve_crossrefs(md + "\nAnd @fig-missing, not \\@fig-a.", numbers, log=warnings.append)
    assert "See [Figure 1](#fig-a), [Figure 2](#fig-b) and mail x@fig-a.org." in md
    assert "?fig-missing?" in md and "\\@fig-a" in md and len(warnings) == 1


def test_table_captions_are_numbered():
    md = ("| a |\n|--:|\n| 1 |\n\n: First table.\n\nText\n\n: not a caption\n\n| b |\n|---|\n| 2 |\n\n"
          ": Second. {#tbl-second}\n\nSee @tbl-second.\n")
    numbers = {}
    out = offline.resolve_crossrefs(offline.number_tables(md, numbers), numbers, log=lambda _msg: None)
    assert ": **Table 1:** First table." in out
    assert ": **Table 2:** Second. {#tbl-second}" in out  # pandoc gives the table the id
    assert "See [Table 2](#tbl-second)." in out and numbers == {"tbl-second": 2}
    assert ": not a caption" in out


def test_stderr_is_logged_and_hidden_outputs_dropped():
    nb = _fake_executed([{"label": "a"}, {"label": "b", "include": False}])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n"),
                           nbformat.v4.new_output("display_data", data={"text/markdown": "shown"})]
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "hidden"})]
    logged = []
    offline.clean_outputs(nb, logged.append)
    assert [o["data"]["text/markdown"] for o in nb.cells[0].outputs] == ["shown"] and nb.cells[1].outputs == []
    assert logged == ["[render]   stderr of chunk 'a' (notebook cell 0 of the .qmd): UserWarning: careful"]


def test_the_style_files_are_package_data():
    assert offline.STYLE.name == "style.css" and ".callout-warning" in offline.STYLE.read_text()
    assert offline.HTML_CALLOUTS.suffix == ".lua" and "callout-title" in offline.HTML_CALLOUTS.read_text()
    assert offline.TYPST_HEADER.suffix == ".typ" and "#set figure(numbering: none)" in offline.TYPST_HEADER.read_text()
