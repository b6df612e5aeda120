"""The offline renderer: the .qmd rendered with Python packages alone, by the tools Quarto is built on.

The .qmd is read into a notebook (:mod:`carcolor.reporting.qmd`), executed with nbclient, exported to
Markdown by nbconvert; figures and tables get their numbers and ids, ``@fig-…`` and ``@tbl-…`` become
links; pandoc (pypandoc's bundled binary) writes self-contained HTML with this module's ``style.css``
(callouts drawn by its ``callout.lua``, the page in a ``main`` landmark), and Typst with its
``header.typ``, which the ``typst`` package compiles into the PDF. What the .qmd's front matter asks of
Quarto, it asks of pandoc too: the citation style (``csl``), the long date (``date-format: long``), the
Typst header and Lua filters of its ``typst`` format, the style sheets of its ``html`` format. The kernel
dies with the job (:mod:`carcolor.kernels`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import date
from pathlib import Path

import yaml

from .. import kernels
from ..sources import package_data
from . import results
from .fmt import long_date
from .qmd import RenderError, describe, qmd_to_notebook, split_front_matter

PACKAGE_DATA = ("templates/offline",)
STYLE = package_data(__file__, "templates/offline/style.css")
TYPST_HEADER = package_data(__file__, "templates/offline/header.typ")
HTML_CALLOUTS = package_data(__file__, "templates/offline/callout.lua")


class ReportChunkError(RenderError):
    """A chunk of the report raised an exception."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IMAGE = re.compile(r"!\[(?:png|jpeg|svg)\]\((?P<path>[^)\s]*?output_(?P<index>\d+)_(?P<n>\d+)\.\w+)\)")
_CROSSREF = re.compile(r"(?<![\w@/.\\])@(?P<kind>[Ff]ig|[Tt]bl)-(?P<name>[A-Za-z0-9_-]*[A-Za-z0-9_])")
_TABLE_CAPTION = re.compile(
    r"(?m)^(?P<lead>(?:Table)?:)[ \t]+(?P<cap>\S.*?)(?:[ \t]+\{#(?P<label>tbl-[A-Za-z0-9_-]+)\})?[ \t]*$")
_KINDS = {"fig": "Figure", "tbl": "Table"}


# --------------------------------------------------------------------------- execute


def execute_notebook(nb, cwd: Path, env: dict, log, timeout: int = 900, workdir: Path = Path(".")):
    """Execute ``nb`` in place with the python3 kernel, which dies with this process and keeps its
    connection file under ``workdir``/.snakemake/; raise :class:`ReportChunkError` naming the failing
    chunk and the Python error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR", *kernels.kernel_arguments()])
    try:
        with kernels.runtime_dir(workdir):
            kernels.retrying(lambda: client.execute(env=env, cwd=str(cwd)), what="the report", log=log)
    except CellExecutionError as err:
        for index, nb_cell in enumerate(nb.cells):
            errors = [o for o in nb_cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                e = errors[0]
                tb = _ANSI.sub("", "\n".join(e.get("traceback", [])))
                tail = "\n".join(tb.strip().splitlines()[-12:])
                raise ReportChunkError(
                    f"report {describe(nb_cell, index)} failed: {e.get('ename')}: "
                    f"{_ANSI.sub('', e.get('evalue', ''))}\n--- traceback (last lines) ---\n{tail}") from None
        raise ReportChunkError(f"a report chunk failed: {_ANSI.sub('', str(err))[-2000:]}") from None
    return nb


def clean_outputs(nb, log) -> None:
    """Drop what the report must not show: stderr (warnings, logged instead), outputs of ``include: false``
    and ``output: false`` chunks."""
    for index, nb_cell in enumerate(nb.cells):
        if nb_cell.cell_type != "code":
            continue
        opts = nb_cell.metadata.get("qmd", {}).get("options", {})
        if opts.get("include") is False or opts.get("output") is False:
            nb_cell.outputs = []
            continue
        kept = []
        for out in nb_cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "").strip()
                if text:
                    log(f"[render]   stderr of {describe(nb_cell, index)}: {text.splitlines()[-1][:200]}")
            else:
                kept.append(out)
        nb_cell.outputs = kept


def notebook_to_markdown(nb, figures_dir: str = "figures") -> tuple[str, dict]:
    """Export with nbconvert's MarkdownExporter (no inputs); returns the Markdown and
    ``{relative path: bytes}`` of the extracted figure files."""
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, resources = exporter.from_notebook_node(nb, resources={"unique_key": "output",
                                                                 "output_files_dir": figures_dir})
    return body, dict(resources.get("outputs", {}))


# --------------------------------------------------------------------------- numbering and cross-references


def number_figures(markdown: str, nb) -> tuple[str, dict[str, int]]:
    """Give images of ``#| label: fig-*`` chunks an id, a numbered caption (``fig-cap``), their alt text
    (``fig-alt``, as Quarto) and page width; strip the alt text of other images (so pandoc does not make
    them captioned figures). Returns the Markdown and ``{label: number}`` in order of appearance."""
    numbers: dict[str, int] = {}

    def repl(m: re.Match) -> str:
        opts = nb.cells[int(m.group("index"))].metadata.get("qmd", {}).get("options", {})
        label = str(opts.get("label", ""))
        if label.startswith("fig-") and label not in numbers:
            numbers[label] = len(numbers) + 1
            caption = f"**Figure {numbers[label]}:** {str(opts.get('fig-cap', '')).strip()}".strip()
            alt = " ".join(str(opts.get("fig-alt", "")).split()).replace('"', "'")
            alt = f' alt="{alt}"' if alt else ""
            return f"![{caption}]({m.group('path')}){{#{label}{alt} width=100%}}"
        return f"![]({m.group('path')}){{width=100%}}"

    return _IMAGE.sub(repl, markdown), numbers


def number_tables(markdown: str, numbers: dict[str, int] | None = None) -> str:
    """Prefix ``: caption`` lines that follow a pipe table with ``**Table N:**``; a caption's ``{#tbl-x}``
    label (Quarto's) stays, for pandoc to give the table that id, and goes into ``numbers``
    (``{label: N}``) when given, for ``@tbl-x`` references."""
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


def resolve_crossrefs(markdown: str, numbers: dict[str, int], log) -> str:
    """``@fig-x`` -> ``[Figure N](#fig-x)``, ``@tbl-x`` -> ``[Table N](#tbl-x)`` (``@Fig-x`` likewise); one
    with no such figure or table is logged and left as ``**?fig-x?**``, as Quarto does."""

    def repl(m: re.Match) -> str:
        kind = m.group("kind").lower()
        label = f"{kind}-{m.group('name')}"
        n = numbers.get(label)
        if n is None:
            log(f"[render]   warning: cross-reference @{label} has no {_KINDS[kind].lower()}")
            return f"**?{label}?**"
        return f"[{_KINDS[kind]} {n}](#{label})"

    return _CROSSREF.sub(repl, markdown)


# --------------------------------------------------------------------------- pandoc and Typst


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


def _run_pandoc(args: list[str], cwd: Path, log) -> None:
    proc = subprocess.run([_pandoc_path(), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RenderError(f"pandoc {' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr}")
    for w in [ln for ln in proc.stderr.splitlines() if ln.strip()][:10]:
        log(f"[render]   pandoc: {w}")


DATE_FORMATS = {"long": long_date, "iso": date.isoformat}  # Quarto's names for them


def _date(value, date_format=None) -> str | None:
    """The document's date as Quarto writes it: ``today`` in ``date-format`` (``long``: ``December 7,
    2026``; ``iso``: ``2026-12-07``); any other date as given."""
    if value is None:
        return None
    if str(value).strip().lower() not in {"today", "now", "last-modified"}:
        return str(value)
    if date_format not in (None, *DATE_FORMATS):
        raise RenderError(f"date-format {date_format!r} is not one the offline renderer writes: use "
                          f"{' or '.join(DATE_FORMATS)}")
    return DATE_FORMATS[date_format or "long"](date.today())


def _format_option(meta: dict, fmt: str, key: str, default=None):
    """An option of one output format (``format: typst: toc:``), else the document's, else ``default``."""
    opts = (meta.get("format") or {}).get(fmt)
    return opts[key] if isinstance(opts, dict) and key in opts else meta.get(key, default)


def _pandoc_metadata(meta: dict, fmt: str) -> dict:
    out = {k: meta[k] for k in ("title", "subtitle", "author", "abstract", "lang", "link-citations") if k in meta}
    if meta.get("date") is not None:
        out["date"] = _date(meta["date"], _format_option(meta, fmt, "date-format"))
    out.setdefault("lang", "en")
    if fmt == "typst":
        for key in ("papersize", "margin", "fontsize", "mainfont", "columns", "section-numbering"):
            if _format_option(meta, fmt, key) is not None:
                out[key] = _format_option(meta, fmt, key)
        if meta.get("number-sections") and "section-numbering" not in out:
            out["section-numbering"] = "1.1"
        out["page-numbering"] = "1"
    else:
        out["pagetitle"] = str(meta.get("title", "Report"))
    return out


def _pandoc(build: Path, meta: dict, fmt: str, log, *extra: str) -> None:
    """pandoc report.md -> index.<html|typ> in build, with the document's metadata for that format."""
    (build / f"meta-{fmt}.yaml").write_text(yaml.safe_dump(_pandoc_metadata(meta, fmt), sort_keys=False,
                                                           allow_unicode=True))
    output = "index.html" if fmt == "html" else "index.typ"
    args = ["report.md", "--from=markdown", "--columns=1000", f"--to={'html5' if fmt == 'html' else 'typst'}",
            "--standalone", f"--metadata-file=meta-{fmt}.yaml", *extra, f"--output={output}"]
    if _format_option(meta, fmt, "toc", False):
        args += ["--toc", "--toc-depth=2"]
    _run_pandoc(args, build, log)


def _listed(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _document_file(qmd_dir: Path, name: str, what: str) -> Path:
    path = (qmd_dir / name).resolve()
    if not path.is_file():
        raise RenderError(f"the .qmd's {what} {path} not found")
    return path


def _document_arguments(meta: dict, fmt: str, qmd_dir: Path) -> list[str]:
    """pandoc's arguments for the files the .qmd names for this format (paths relative to it): its Lua
    filters (in order; Quarto's ``at:`` stages do not apply), its bibliography with its citation style,
    what it includes in the header and its style sheets (after the offline renderer's own)."""
    args = [f"--lua-filter={_document_file(qmd_dir, f.get('path') if isinstance(f, dict) else f, 'filter')}"
            for f in _listed(_format_option(meta, fmt, "filters")) if f != "quarto"]
    bibliography = _listed(_format_option(meta, fmt, "bibliography"))
    if bibliography:
        args += ["--citeproc", *(f"--bibliography={_document_file(qmd_dir, b, 'bibliography')}" for b in bibliography)]
        if _format_option(meta, fmt, "csl"):
            args.append(f"--csl={_document_file(qmd_dir, _format_option(meta, fmt, 'csl'), 'citation style')}")
    args += [f"--include-in-header={_document_file(qmd_dir, h, 'header')}"
             for h in _listed(_format_option(meta, fmt, "include-in-header"))]
    args += [f"--css={_document_file(qmd_dir, c, 'style sheet')}" for c in _listed(_format_option(meta, fmt, "css"))]
    return args


def _typst_pdf(build: Path, log) -> Path:
    import typst

    try:
        _, warnings = typst.compile_with_warnings(str(build / "index.typ"), output=str(build / "index.pdf"),
                                                  root=str(build))
    except Exception as err:  # typst.TypstError carries the diagnostics
        raise RenderError(f"typst could not compile {build / 'index.typ'}: {err}") from err
    for w in (warnings or [])[:10]:
        log(f"[render]   typst: {getattr(w, 'message', w)}")
    return build / "index.pdf"


# --------------------------------------------------------------------------- the renderer


def render(qmd: Path, build: Path, results_dir: Path, log) -> dict:
    """Render ``qmd`` into ``build``/index.html and index.pdf from the tables in ``results_dir``.

    Returns ``{"renderer": name and versions, "html": path, "pdf": path}``.
    """
    renderer = f"pandoc {pandoc_version()} + Typst {typst_version(build)} (offline fallback)"
    log(f"[render] renderer: {renderer}")
    t0 = time.perf_counter()
    text = qmd.read_text(encoding="utf-8")
    meta, _, _ = split_front_matter(text)
    nb = qmd_to_notebook(text)
    execute_notebook(nb, qmd.parent.resolve(), results.environment(results_dir, renderer), log, workdir=build)
    clean_outputs(nb, log)
    log(f"[render] execute: {len(nb.cells)} notebook cells in {qmd.parent} ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    body, files = notebook_to_markdown(nb)
    for rel, data in files.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_bytes(data)
    body, numbers = number_figures(body, nb)
    body = resolve_crossrefs(number_tables(body, numbers), numbers, log)
    (build / "report.md").write_text(body, encoding="utf-8")
    html = ["--embed-resources", "--mathml", f"--css={STYLE}", "--resource-path=.", f"--lua-filter={HTML_CALLOUTS}",
            "--variable=include-before:<main>", "--variable=include-after:</main>",  # the page's main landmark
            *(["--number-sections"] if meta.get("number-sections") else [])]
    _pandoc(build, meta, "html", log, *html, *_document_arguments(meta, "html", qmd.parent))
    log(f"[render] html: {sum(k.startswith('fig-') for k in numbers)} figures ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    _pandoc(build, meta, "typst", log, f"--include-in-header={TYPST_HEADER}",
            *_document_arguments(meta, "typst", qmd.parent))
    pdf = _typst_pdf(build, log)
    log(f"[render] pdf: ({time.perf_counter() - t0:.1f} s)")
    return {"renderer": renderer, "html": build / "index.html", "pdf": pdf}
