"""The report's Markdown without rendering it: the chunks and inline code of report/index.qmd run in this
process, as the offline renderer runs them in its kernel, with the figures left out. It takes a fraction
of a second, so the report's words can be tried on many grids (one seed, one pair, tied pairs, no test
split), where a full render takes about fifteen.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from unittest import mock

from carcolor.reporting import qmd, results

QMD = Path(__file__).resolve().parents[1] / "report" / "index.qmd"


def _run(source: str, namespace: dict) -> str:
    """What one chunk shows in the report: its last expression's Markdown."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<chunk>", "exec"), namespace)
    value = eval(compile(ast.Expression(last.value), "<chunk>", "eval"), namespace) if last else None
    return value._repr_markdown_() if hasattr(value, "_repr_markdown_") else ""


def report_markdown(results_dir: Path, renderer: str = "report_text") -> str:
    """The report's Markdown for the tables in ``results_dir``, figures left out."""
    nb = qmd.qmd_to_notebook(QMD.read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__report__"}
    exec(qmd.INLINE_HELPER_SOURCE, namespace)
    parts = []
    cwd = os.getcwd()
    with mock.patch.dict(os.environ, {results.RESULTS_VARIABLE: str(Path(results_dir).resolve()),
                                      results.RENDERED_WITH_VARIABLE: renderer}):
        os.chdir(QMD.parent)
        try:
            for nb_cell in nb.cells:
                meta = nb_cell.metadata["qmd"]
                options = meta.get("options", {})
                if nb_cell.cell_type == "markdown":
                    parts.append(nb_cell.source)
                elif meta.get("role") != "setup" and not str(options.get("label", "")).startswith("fig-"):
                    parts.append(_run(nb_cell.source, namespace))
        finally:
            os.chdir(cwd)
    return "\n\n".join(part.strip("\n") for part in parts if part.strip())
