"""A cell's executed notebook as one self-contained HTML page: results/report/cells/<cell>.html.

nbconvert's JupyterLab page with its CSS inline and every figure embedded, without the scripts the
stock page fetches from the network, so it opens offline and wherever results/report/ is copied.
A line on top names the cell and its notebook and links back to the report.
"""
from __future__ import annotations

import re
from pathlib import Path

import sys

from .. import atomic
from ..sources import package_data

COMMAND = "cell-page"

PACKAGE_DATA = ("templates/cellpage",)
TEMPLATES = package_data(__file__, "templates/cellpage").parent
# what a browser would fetch by itself: a script, image or frame source, a stylesheet link
_REMOTE = re.compile(r"""(?:\bsrc\s*=\s*|<link\b[^>]*\bhref\s*=\s*)["'](?:https?:)?//""", re.I)
# a header cell with no text: the corner of a table pandas prints with its index
_EMPTY_HEADER = re.compile(r"<th(\s[^>]*)?>\s*</th>")


def header(cell: str, notebook: str | Path) -> str:
    return (f"**Cell `{cell}`**: the executed notebook `{notebook}`, exported to this page. "
            f"[Back to the report](../index.html#sec-runs) · "
            f"[where it ran](../index.html#sec-provenance)")


def export(notebook: str | Path, out: str | Path, cell: str | None = None) -> Path:
    """Write notebook as a self-contained page at out (atomically); refuse a page that would load
    anything from the network."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook, out = Path(notebook), Path(out)
    cell = cell or notebook.parent.name
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(header(cell, notebook)))
    nb.metadata.pop("widgets", None)  # widget state would pull the widget manager from a CDN
    exporter = HTMLExporter(template_name="cellpage", extra_template_basedirs=[str(TEMPLATES)],
                            embed_images=True)
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{cell}: training notebook"}})
    html = _EMPTY_HEADER.sub(r"<td\1></td>", html)  # a header must name its column or row; the corner names none
    remote = _REMOTE.search(html)
    if remote:
        raise ValueError(f"the page of {notebook} would load {html[remote.start():remote.end() + 60]!r}...")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(out, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return out


def run(args) -> int:
    """`carcolor cell-page`: export one cell's executed notebook as a self-contained HTML page."""
    export(args.notebook, args.out, args.cell)
    print(f"[cell-page] {args.notebook} -> {args.out}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("notebook", help="results/runs/<cell>/train.ipynb")
    p.add_argument("--out", required=True, help="results/report/cells/<cell>.html")
    p.add_argument("--cell", default=None, help="the cell's name (default: the notebook's folder)")


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
