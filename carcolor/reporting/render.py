"""Render ``report/index.qmd`` to a self-contained HTML page and a PDF.

Two renderers:

* **Quarto**, when ``quarto`` is on PATH: ``quarto render --to html`` and
  ``--to typst``, then the two files are moved into the output folder.
* **Offline fallback**, with only Python packages: the .qmd is converted to a
  notebook, executed with nbclient, exported to Markdown with nbconvert, given
  numbered figures and cross-references, and turned into HTML by pandoc
  (pypandoc's bundled binary) and into PDF by pandoc's Typst writer plus the
  ``typst`` Python package.

Both set ``CARCOLOR_RESULTS`` (where the tables are) and ``CARCOLOR_RENDERER``
(named in the report) for the code in the report.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

from .. import atomic

COMMAND = "render"

__all__ = ["RenderError", "ReportCellError", "render_report", "qmd_to_notebook", "markdown_to_code",
           "number_figures"]


class RenderError(RuntimeError):
    """The report could not be rendered."""


class ReportCellError(RenderError):
    """A code cell of the report raised an exception."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================== qmd -> notebook

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*\n", re.S)
_CHUNK_START = re.compile(r"^(?P<fence>`{3,})\s*\{(?P<lang>[A-Za-z0-9_]+)(?P<rest>[^}]*)\}\s*$")
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
_INLINE = re.compile(r"`\{python\}\s+(?P<expr>[^`]+?)\s*`")
_OPTION = re.compile(r"^#\|\s?(.*)$")

INLINE_HELPER = "__qmd_inline_markdown__"

INLINE_HELPER_SOURCE = f"""\
def {INLINE_HELPER}(parts):
    from IPython.display import Markdown
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif hasattr(part, "_repr_markdown_"):
            out.append(part._repr_markdown_())
        else:
            out.append(str(part))
    return Markdown("".join(out))
"""

SETUP_SOURCE = """\
# Set up by carcolor.reporting.render (offline fallback): figure format and inline-expression helper.
get_ipython().run_line_magic("matplotlib", "inline")
import matplotlib.pyplot as __qmd_plt__
from matplotlib_inline.backend_inline import set_matplotlib_formats as __qmd_formats__
__qmd_formats__("png")
__qmd_plt__.rcParams["figure.dpi"] = 150
__qmd_plt__.rcParams["savefig.dpi"] = "figure"
del __qmd_plt__, __qmd_formats__

""" + INLINE_HELPER_SOURCE


def split_front_matter(text: str) -> tuple[dict, str, int]:
    """``(metadata, body, number of lines taken by the front matter)``."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text, 0
    meta = yaml.safe_load(m.group(1)) or {}
    if not isinstance(meta, dict):
        raise RenderError("the YAML front matter of the .qmd is not a mapping")
    return meta, text[m.end():], m.group(0).count("\n")


def parse_options(source: str) -> dict:
    """The ``#| key: value`` lines at the top of a code chunk, as a dict."""
    lines = []
    for line in source.splitlines():
        m = _OPTION.match(line)
        if not m:
            break
        lines.append(m.group(1))
    if not lines:
        return {}
    try:
        opts = yaml.safe_load("\n".join(lines)) or {}
    except yaml.YAMLError as err:
        raise RenderError(f"cannot parse the #| options of a chunk: {err}") from err
    return opts if isinstance(opts, dict) else {}


def _outside_fences(markdown: str):
    """Yield ``(start, end)`` spans of ``markdown`` that are not fenced code blocks."""
    pos = 0
    fence = None
    offset = 0
    for line in markdown.splitlines(keepends=True):
        stripped = line.strip()
        if fence is None:
            m = _FENCE.match(stripped)
            if m:
                if offset > pos:
                    yield pos, offset
                fence = m.group("fence")
        elif stripped and stripped == fence[0] * len(stripped) and len(stripped) >= len(fence):
            fence = None
            pos = offset + len(line)
        offset += len(line)
    if fence is None and offset > pos:
        yield pos, offset


def markdown_to_code(markdown: str) -> str | None:
    """Code that displays ``markdown`` with its inline `` `{python} expr` `` values
    substituted, or ``None`` when it has no inline code (fenced blocks are left alone)."""
    markdown = markdown.strip("\n")
    matches = [m for start, end in _outside_fences(markdown)
               for m in _INLINE.finditer(markdown, start, end)]
    if not matches:
        return None
    pieces: list[str] = []
    pos = 0
    for m in matches:
        pieces.append(repr(markdown[pos:m.start()]))
        pieces.append(f"({m.group('expr')})")
        pos = m.end()
    pieces.append(repr(markdown[pos:]))
    body = ",\n    ".join(pieces)
    return f"#| echo: false\n{INLINE_HELPER}([\n    {body},\n])"


def _segments(body: str):
    """Yield ``("markdown", text, line)`` and ``("code", lang, source, line)`` pieces."""
    lines = body.splitlines(keepends=True)
    md: list[str] = []
    md_line = 1
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _CHUNK_START.match(line.rstrip("\n"))
        if m:
            if "".join(md).strip():
                yield ("markdown", "".join(md), md_line)
            md = []
            fence = m.group("fence")
            start = i + 1
            code: list[str] = []
            i += 1
            while i < len(lines) and lines[i].rstrip() != fence:
                code.append(lines[i])
                i += 1
            if i >= len(lines):
                raise RenderError(f"code chunk opened on line {start} is never closed")
            yield ("code", m.group("lang"), "".join(code).rstrip("\n"), start)
            i += 1
            md_line = i + 1
            continue
        f = _FENCE.match(line)
        if f:  # a plain fenced block inside the markdown: copy it verbatim
            fence = f.group("fence")
            md.append(line)
            i += 1
            while i < len(lines):
                md.append(lines[i])
                if lines[i].strip().startswith(fence[0] * len(fence)) and lines[i].strip().strip(fence[0]) == "":
                    i += 1
                    break
                i += 1
            continue
        md.append(line)
        i += 1
    if "".join(md).strip():
        yield ("markdown", "".join(md), md_line)


def qmd_to_notebook(text: str):
    """Convert the text of a .qmd file into an (unexecuted) notebook.

    * YAML front matter -> ``metadata["qmd"]`` (and ``metadata["title"]``);
    * ```` ```{python} ```` chunks -> code cells, ``#|`` option lines kept in the
      source and parsed into ``cell.metadata["qmd"]["options"]``;
    * markdown between chunks -> markdown cells, or, when it contains inline
      `` `{python} expr` ``, a hidden code cell that displays the Markdown with the
      values substituted.

    A first hidden cell sets the figure format and defines the inline helper.
    """
    import nbformat

    meta, body, offset = split_front_matter(text)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["qmd"] = json.loads(json.dumps(meta, default=str))
    if "title" in meta:
        nb.metadata["title"] = str(meta["title"])
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE)
    setup.metadata["qmd"] = {"options": {"echo": False, "include": False}, "role": "setup", "line": 0}
    nb.cells.append(setup)
    for seg in _segments(body):
        if seg[0] == "markdown":
            _, md, line = seg
            code = markdown_to_code(md)
            if code is None:
                cell = nbformat.v4.new_markdown_cell(md.strip("\n"))
                cell.metadata["qmd"] = {"line": line + offset}
            else:
                cell = nbformat.v4.new_code_cell(code)
                cell.metadata["qmd"] = {"options": {"echo": False}, "role": "inline", "line": line + offset}
            nb.cells.append(cell)
        else:
            _, lang, source, line = seg
            if lang != "python":
                raise RenderError(f"line {line + offset}: only python chunks are supported, not {{{lang}}}")
            cell = nbformat.v4.new_code_cell(source)
            cell.metadata["qmd"] = {"options": parse_options(source), "role": "chunk", "line": line + offset}
            nb.cells.append(cell)
    return nb


# =========================================================================== execute

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _cell_name(cell, index: int) -> str:
    q = cell.metadata.get("qmd", {})
    label = q.get("options", {}).get("label")
    where = f"line {q['line']}" if q.get("line") else f"cell {index}"
    if label:
        return f"'{label}' ({where} of the .qmd)"
    if q.get("role") == "inline":
        return f"inline code in the text at {where} of the .qmd"
    return f"the chunk at {where} of the .qmd"


def execute_notebook(nb, cwd: Path, env: dict, timeout: int = 900, log=_stderr):
    """Execute ``nb`` in place with the python3 kernel; raise :class:`ReportCellError`
    naming the failing cell and the Python error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    try:
        client.execute(env=env, cwd=str(cwd))
    except CellExecutionError as err:
        for index, cell in enumerate(nb.cells):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                e = errors[0]
                tb = _ANSI.sub("", "\n".join(e.get("traceback", [])))
                tail = "\n".join(tb.strip().splitlines()[-12:])
                raise ReportCellError(
                    f"report cell {_cell_name(cell, index)} failed: {e.get('ename')}: "
                    f"{_ANSI.sub('', e.get('evalue', ''))}\n--- traceback (last lines) ---\n{tail}"
                ) from None
        raise ReportCellError(f"a report cell failed: {_ANSI.sub('', str(err))[-2000:]}") from None
    return nb


# =========================================================================== notebook -> markdown

_IMAGE = re.compile(r"!\[(?:png|jpeg|svg)\]\((?P<path>[^)\s]*?output_(?P<cell>\d+)_(?P<idx>\d+)\.\w+)\)")
_CROSSREF = re.compile(r"(?<![\w@/.])@(?P<kind>[Ff]ig|[Tt]bl)-(?P<name>[A-Za-z0-9_-]*[A-Za-z0-9_])")
_TABLE_CAPTION = re.compile(r"(?m)^(?P<lead>(?:Table)?:)[ \t]+(?P<cap>\S.*?)(?:[ \t]+\{#(?P<label>tbl-[A-Za-z0-9_-]+)\})?[ \t]*$")
_KINDS = {"fig": "Figure", "tbl": "Table"}


def _clean_outputs(nb, log=_stderr) -> None:
    """Drop what the report must not show: stderr (warnings), outputs of
    ``include: false`` / ``output: false`` cells."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        opts = cell.metadata.get("qmd", {}).get("options", {})
        if opts.get("include") is False or opts.get("output") is False:
            cell.outputs = []
            continue
        kept = []
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "").strip()
                if text:
                    log(f"[render]   stderr of {_cell_name(cell, index)}: {text.splitlines()[-1][:200]}")
                continue
            kept.append(out)
        cell.outputs = kept


def notebook_to_markdown(nb, figures_dir: str = "figures") -> tuple[str, dict]:
    """Export with nbconvert's MarkdownExporter (no inputs); returns the Markdown and
    ``{relative path: bytes}`` of the extracted figure files."""
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, resources = exporter.from_notebook_node(
        nb, resources={"unique_key": "output", "output_files_dir": figures_dir})
    return body, dict(resources.get("outputs", {}))


def number_figures(markdown: str, nb) -> tuple[str, dict[str, int]]:
    """Give images of ``#| label: fig-*`` cells an id, a numbered caption
    (``fig-cap``), their alt text (``fig-alt``, as Quarto) and page width; strip the
    alt text of other images (so pandoc does not make them captioned figures).
    Returns the Markdown and ``{label: number}`` in order of appearance."""
    numbers: dict[str, int] = {}

    def repl(m: re.Match) -> str:
        cell = nb.cells[int(m.group("cell"))]
        opts = cell.metadata.get("qmd", {}).get("options", {})
        label = str(opts.get("label", ""))
        if label.startswith("fig-") and label not in numbers:
            numbers[label] = len(numbers) + 1
            cap = str(opts.get("fig-cap", "")).strip()
            caption = f"**Figure {numbers[label]}:** {cap}".strip()
            alt = " ".join(str(opts.get("fig-alt", "")).split()).replace('"', "'")
            alt = f' alt="{alt}"' if alt else ""
            return f"![{caption}]({m.group('path')}){{#{label}{alt} width=100%}}"
        return f"![]({m.group('path')}){{width=100%}}"

    return _IMAGE.sub(repl, markdown), numbers


def resolve_crossrefs(markdown: str, numbers: dict[str, int], log=_stderr) -> str:
    """``@fig-x`` -> ``[Figure N](#fig-x)``, ``@tbl-x`` -> ``[Table N](#tbl-x)`` (``@Fig-x`` likewise)."""

    def repl(m: re.Match) -> str:
        kind = m.group("kind").lower()
        label = f"{kind}-{m.group('name')}"
        n = numbers.get(label)
        if n is None:
            log(f"[render]   warning: cross-reference @{label} has no {_KINDS[kind].lower()}")
            return f"**?{label}?**"
        return f"[{_KINDS[kind]} {n}](#{label})"

    return _CROSSREF.sub(repl, markdown)


def number_tables(markdown: str, numbers: dict[str, int] | None = None) -> str:
    """Prefix ``: caption`` lines that follow a pipe table with ``**Table N:**``; a caption's
    ``{#tbl-x}`` label (Quarto's) stays, for pandoc to give the table that id, and goes into
    ``numbers`` (``{label: N}``) when given, for ``@tbl-x`` references."""
    lines = markdown.split("\n")
    n = 0
    for i, line in enumerate(lines):
        m = _TABLE_CAPTION.match(line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j].lstrip().startswith("|"):
            n += 1
            label = m.group("label")
            lines[i] = f": **Table {n}:** {m.group('cap')}" + (f" {{#{label}}}" if label else "")
            if label and numbers is not None:
                numbers[label] = n
    return "\n".join(lines)


# =========================================================================== pandoc / typst

FALLBACK_CSS = """
:root { --ink: #1d2330; --muted: #5b6472; --rule: #d9dee6; --accent: #1f4e99; }
html { font-size: 17px; }
body { max-width: 46rem; margin: 2.5rem auto 4rem; padding: 0 1.25rem; color: var(--ink);
  font-family: "Source Serif Pro", "Libertinus Serif", Georgia, "Times New Roman", serif;
  line-height: 1.55; background: #fff; }
h1, h2, h3, h4, #TOC, figcaption, table, caption, .date, .subtitle {
  font-family: "Source Sans Pro", "Helvetica Neue", Arial, sans-serif; }
header#title-block-header { text-align: center; margin-bottom: 2rem; }
h1.title { font-size: 2rem; line-height: 1.2; margin: 0 0 .4rem; }
p.subtitle { font-size: 1.15rem; color: var(--muted); margin: 0 0 .4rem; }
p.date { color: var(--muted); font-size: .95rem; margin: 0; }
h1 { font-size: 1.45rem; margin-top: 2.4rem; border-bottom: 1px solid var(--rule); padding-bottom: .2rem; }
h2 { font-size: 1.18rem; margin-top: 1.8rem; }
h3 { font-size: 1.02rem; }
.header-section-number { color: var(--muted); margin-right: .35em; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
nav#TOC { background: #f6f8fb; border: 1px solid var(--rule); border-radius: 6px;
  padding: .6rem 1.2rem; margin: 0 0 2rem; font-size: .9rem; }
nav#TOC > ul { columns: 2; column-gap: 2rem; }
nav#TOC ul { list-style: none; padding-left: 1rem; margin: .2rem 0; }
nav#TOC > ul { padding-left: 0; }
blockquote { margin: 1.2rem 0; padding: .8rem 1.1rem; background: #fff6e5;
  border-left: 5px solid #e69500; border-radius: 4px; }
blockquote p { margin: .2rem 0; }
figure { margin: 1.6rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .88rem; color: var(--muted); text-align: left; margin-top: .4rem; }
table { border-collapse: collapse; margin: 1.2rem auto; font-size: .8rem;
  border-top: 2px solid var(--ink); border-bottom: 2px solid var(--ink); }
thead th { border-bottom: 1px solid var(--ink); }
th, td { padding: .28rem .6rem; vertical-align: top; }
tbody tr:nth-child(even) { background: #f7f8fa; }
caption { caption-side: top; font-size: .88rem; color: var(--muted); text-align: left;
  padding-bottom: .4rem; }
code { font-family: "Source Code Pro", Menlo, Consolas, monospace; font-size: .86em;
  background: #f3f4f7; padding: .05em .25em; border-radius: 3px; }
td code { background: none; padding: 0; white-space: nowrap; }
table#tbl-code td code { white-space: normal; overflow-wrap: anywhere; }  /* the re-run commands */
math[display="block"] { margin: .8rem 0; overflow-x: auto; }
div#refs { font-size: .9rem; }
div.csl-entry { margin-bottom: .5rem; padding-left: 1.5em; text-indent: -1.5em; }
"""

TYPST_HEADER = """
// carcolor.reporting.render (offline fallback): numbering is done before pandoc.
#set figure(numbering: none)
#show figure.caption: set text(size: 0.88em)
#show figure: set block(spacing: 1.4em)
#show table: set text(size: 0.85em)
#show table: set par(justify: false)
#set table(inset: (x: 6pt, y: 3.5pt))
#show table.cell.where(y: 0): set text(weight: "bold")
#show raw: set text(size: 1.05em)
#show link: set text(fill: rgb("#1f4e99"))
#show heading: set block(above: 1.3em, below: 0.7em)
#show quote.where(block: true): it => block(
  width: 100%, fill: rgb("#fff4e0"), stroke: (left: 3pt + rgb("#e69500")),
  inset: (x: 10pt, y: 8pt), radius: 2pt, it.body)
"""


def _pandoc_path() -> str:
    import pypandoc

    return pypandoc.get_pandoc_path()


def pandoc_version() -> str:
    out = subprocess.run([_pandoc_path(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def typst_version(folder: Path) -> str:
    import typst

    probe = Path(folder) / "version.typ"
    probe.write_text("")
    try:
        return str(json.loads(typst.eval(str(probe), "str(sys.version)")))
    except Exception:  # older wheels: report the wheel's version
        from importlib.metadata import version

        return version("typst")


def _run_pandoc(args: list[str], cwd: Path, log=_stderr) -> None:
    proc = subprocess.run([_pandoc_path(), *args], cwd=cwd, capture_output=True, text=True)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode != 0:
        raise RenderError(f"pandoc {' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr}")
    for w in warnings[:10]:
        log(f"[render]   pandoc: {w}")


def _date(value) -> str | None:
    if value is None:
        return None
    if str(value).strip().lower() in {"today", "now", "last-modified"}:
        d = date.today()
        return f"{d:%B} {d.day}, {d.year}"
    return str(value)


def _pandoc_metadata(meta: dict, fmt: str) -> dict:
    out = {k: meta[k] for k in ("title", "subtitle", "author", "abstract", "lang") if k in meta}
    if meta.get("date") is not None:
        out["date"] = _date(meta["date"])
    out.setdefault("lang", "en")
    out["link-citations"] = True
    fmt_opts = (meta.get("format") or {}).get(fmt) or {}
    if fmt == "typst" and isinstance(fmt_opts, dict):
        for key in ("papersize", "margin", "fontsize", "mainfont", "columns", "section-numbering"):
            if key in fmt_opts:
                out[key] = fmt_opts[key]
        if meta.get("number-sections") and "section-numbering" not in out:
            out["section-numbering"] = "1.1"
        out["page-numbering"] = "1"
    if fmt == "html":
        out["pagetitle"] = str(meta.get("title", "Report"))
    return out


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _bibliography(meta: dict, qmd_dir: Path) -> list[Path]:
    bib = meta.get("bibliography") or []
    bib = [bib] if isinstance(bib, str) else list(bib)
    paths = [(qmd_dir / b).resolve() for b in bib]
    for p in paths:
        if not p.is_file():
            raise RenderError(f"bibliography {p} not found")
    return paths


def _fmt_option(meta: dict, fmt: str, key: str, default=None):
    opts = (meta.get("format") or {}).get(fmt)
    if isinstance(opts, dict) and key in opts:
        return opts[key]
    return meta.get(key, default)


def build_folder(out_dir: Path) -> Path:
    """The fallback's work folder: next to the output folder (never in /tmp, where a killed run would
    leave it behind), emptied first, since whatever is there is a killed run's leftovers."""
    build = out_dir.parent / f".{out_dir.name}.build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    return build


def _render_fallback(qmd: Path, out_dir: Path, results_dir: Path, log, keep_build: bool = False) -> dict:
    import typst

    build = build_folder(out_dir)
    renderer = f"pandoc {pandoc_version()} + Typst {typst_version(build)} (offline fallback)"
    log(f"[render] renderer: {renderer}")
    try:
        t0 = time.perf_counter()
        text = qmd.read_text(encoding="utf-8")
        meta, _, _ = split_front_matter(text)
        nb = qmd_to_notebook(text)
        log(f"[render] convert: {qmd} -> notebook with {len(nb.cells)} cells "
            f"({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        env = {**os.environ, "CARCOLOR_RESULTS": str(results_dir.resolve()), "CARCOLOR_RENDERER": renderer}
        execute_notebook(nb, qmd.parent.resolve(), env, log=log)
        _clean_outputs(nb, log=log)
        log(f"[render] execute: {len(nb.cells)} cells in {qmd.parent} ({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        body, files = notebook_to_markdown(nb)
        for rel, data in files.items():
            dest = build / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        body, numbers = number_figures(body, nb)
        body = number_tables(body, numbers)
        body = resolve_crossrefs(body, numbers, log=log)
        (build / "report.md").write_text(body, encoding="utf-8")
        bibs = _bibliography(meta, qmd.parent)
        cite = ["--citeproc", *[f"--bibliography={b}" for b in bibs]] if bibs else []
        (build / "style.css").write_text(FALLBACK_CSS)
        _write_yaml(build / "meta-html.yaml", _pandoc_metadata(meta, "html"))
        args = ["report.md", "--from=markdown", "--columns=1000", "--to=html5", "--standalone",
                "--embed-resources",
                "--mathml", "--css=style.css", "--metadata-file=meta-html.yaml",
                "--resource-path=.", *cite, "--output=index.html"]
        if _fmt_option(meta, "html", "toc", False):
            args += ["--toc", "--toc-depth=2"]
        if meta.get("number-sections"):
            args.append("--number-sections")
        _run_pandoc(args, build, log)
        log(f"[render] html: {sum(k.startswith('fig-') for k in numbers)} figures ({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        (build / "header.typ").write_text(TYPST_HEADER)
        _write_yaml(build / "meta-typst.yaml", _pandoc_metadata(meta, "typst"))
        args = ["report.md", "--from=markdown", "--columns=1000", "--to=typst", "--standalone",
                "--metadata-file=meta-typst.yaml", "--include-in-header=header.typ", *cite,
                "--output=index.typ"]
        if _fmt_option(meta, "typst", "toc", False):
            args += ["--toc", "--toc-depth=2"]
        _run_pandoc(args, build, log)
        try:
            _, warnings = typst.compile_with_warnings(str(build / "index.typ"), output=str(build / "index.pdf"),
                                                      root=str(build))
        except Exception as err:  # typst.TypstError carries the diagnostics
            raise RenderError(f"typst could not compile {build / 'index.typ'}: {err}") from err
        for w in (warnings or [])[:10]:
            log(f"[render]   typst: {getattr(w, 'message', w)}")
        log(f"[render] pdf: ({time.perf_counter() - t0:.1f} s)")

        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_together({out_dir / name: functools.partial(shutil.copyfile, build / name)
                               for name in ("index.html", "index.pdf")})
    finally:
        if keep_build:
            log(f"[render] intermediate files kept in {build}")
        else:
            shutil.rmtree(build, ignore_errors=True)
    return {"renderer": renderer, "html": out_dir / "index.html", "pdf": out_dir / "index.pdf"}


# =========================================================================== quarto


def _find_output(name: str, since: float, roots: list[Path]) -> Path | None:
    found = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob(name) if p.is_file() and p.stat().st_mtime >= since - 1]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _render_quarto(qmd: Path, out_dir: Path, results_dir: Path, log) -> dict:
    """Quarto renders each format into a fresh build folder (``--output-dir``: Quarto may empty its
    output folder, and results/report/ also holds the cells' pages), where the output lands under the
    .qmd's sub-folder (``report/index.html``); the file is then moved into out_dir. The kernel daemon
    is off, so the render reads this run's ``CARCOLOR_RESULTS``, not a kept kernel's."""
    quarto = shutil.which("quarto")
    if not quarto:
        raise RenderError("quarto is not on PATH (use --renderer fallback)")
    version = subprocess.run([quarto, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    renderer = f"Quarto {version}"
    log(f"[render] renderer: {renderer}")
    env = {**os.environ, "CARCOLOR_RESULTS": str(results_dir.resolve()), "CARCOLOR_RENDERER": renderer}
    build = build_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"renderer": renderer}
    try:
        for key, fmt, suffix in (("html", "html", ".html"), ("pdf", "typst", ".pdf")):
            t0 = time.perf_counter()
            start = time.time()
            proc = subprocess.run([quarto, "render", str(qmd), "--to", fmt, "--output-dir", str(build.resolve()),
                                   "--no-execute-daemon"], env=env)
            if proc.returncode != 0:
                raise RenderError(f"quarto render --to {fmt} failed with exit code {proc.returncode}")
            found = _find_output(qmd.stem + suffix, start, [build])
            if found is None:
                raise RenderError(f"quarto finished but wrote no {qmd.stem}{suffix} under {build}")
            dest = out_dir / f"index{suffix}"
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.move(str(found), tmp)
            os.replace(tmp, dest)
            result[key] = dest
            log(f"[render] {fmt}: ({time.perf_counter() - t0:.1f} s)")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return result


# =========================================================================== entry points


def render_report(qmd: Path, out_dir: Path, results_dir: Path, *, renderer: str = "auto",
                  log=_stderr, keep_build: bool = False) -> dict:
    """Render qmd into out_dir/index.html (self-contained, offline) and out_dir/index.pdf.

    renderer: "auto" (quarto if on PATH else fallback), "quarto", "fallback".
    Returns {"renderer": ..., "html": path, "pdf": path}. Progress goes to ``log``
    (stderr by default). ``keep_build`` keeps the fallback's intermediate files
    (notebook export, figures, .typ) in a temporary folder for inspection.
    """
    qmd, out_dir, results_dir = Path(qmd), Path(out_dir), Path(results_dir)
    if not qmd.is_file():
        raise RenderError(f"report source {qmd} not found")
    if renderer not in {"auto", "quarto", "fallback"}:
        raise ValueError(f"renderer must be auto, quarto or fallback, not {renderer!r}")
    if renderer == "auto":
        renderer = "quarto" if shutil.which("quarto") else "fallback"
    t0 = time.perf_counter()
    if renderer == "quarto":
        result = _render_quarto(qmd, out_dir, results_dir, log)
    else:
        result = _render_fallback(qmd, out_dir, results_dir, log, keep_build=keep_build)
    log(f"[render] done in {time.perf_counter() - t0:.1f} s: {result['html']}, {result['pdf']}")
    return result


def run(args: argparse.Namespace) -> int:
    """`carcolor render`: render report/index.qmd into results/report/index.html and index.pdf."""
    try:
        render_report(Path(args.qmd), Path(args.out), Path(args.results), renderer=args.renderer,
                      keep_build=args.keep_build)
    except RenderError as err:
        _stderr(f"error: {err}")
        return 1
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qmd", default="report/index.qmd", help="report source (default: %(default)s)")
    p.add_argument("--results", default="results",
                   help="results directory that contains tables/ (default: %(default)s)")
    p.add_argument("--out", default="results/report",
                   help="where index.html and index.pdf go (default: %(default)s)")
    p.add_argument("--renderer", choices=["auto", "quarto", "fallback"], default="auto",
                   help="auto: Quarto when on PATH, else the offline fallback (default: %(default)s)")
    p.add_argument("--keep-build", action="store_true",
                   help="keep the fallback's intermediate files (their folder is printed)")


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
