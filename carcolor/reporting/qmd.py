"""A Quarto document (``.qmd``) read into an unexecuted Jupyter notebook, for the offline renderer.

* the YAML front matter -> ``metadata["qmd"]`` (and ``metadata["title"]``);
* each ```` ```{python} ```` chunk -> a code cell, its ``#|`` option lines kept in the source and parsed
  into ``metadata["qmd"]["options"]``;
* the Markdown between chunks -> a Markdown cell, or, when it holds inline `` `{python} expr` ``, a
  hidden code cell that displays that Markdown with the values put in, as Quarto does: a value with a
  Markdown form (``IPython.display.Markdown``) as Markdown, text escaped so that it reads literally.
"""

from __future__ import annotations

import json
import re

import yaml


class RenderError(RuntimeError):
    """The report could not be rendered."""


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*\n", re.S)
_CHUNK_START = re.compile(r"^(?P<fence>`{3,})\s*\{(?P<lang>[A-Za-z0-9_]+)(?P<rest>[^}]*)\}\s*$")
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
_INLINE = re.compile(r"`\{python\}\s+(?P<expr>[^`]+?)\s*`")
_OPTION = re.compile(r"^#\|\s?(.*)$")

INLINE_HELPER = "__qmd_inline_markdown__"
MARKDOWN_SPECIALS = "\\`*_{}[]()>#+-.!"  # what Quarto escapes in an inline value that is plain text

INLINE_HELPER_SOURCE = f"""\
def {INLINE_HELPER}(parts):
    import re
    from IPython.display import Markdown
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif hasattr(part, "_repr_markdown_"):
            out.append(part._repr_markdown_())
        elif isinstance(part, str):
            out.append(re.sub("([" + re.escape({MARKDOWN_SPECIALS!r}) + "])", r"\\\\\\1", part))
        else:
            out.append(str(part))
    return Markdown("".join(out))
"""

SETUP_SOURCE = """\
# Set up by carcolor.reporting.qmd (offline renderer): figure format and inline-expression helper.
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
    pos = offset = 0
    fence = None
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
    matches = [m for start, end in _outside_fences(markdown) for m in _INLINE.finditer(markdown, start, end)]
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


def _fenced_block(lines: list[str], i: int) -> int:
    """The index after the plain fenced block that opens at line i (it is copied verbatim)."""
    fence = _FENCE.match(lines[i]).group("fence")
    i += 1
    while i < len(lines):
        stripped = lines[i].strip()
        i += 1
        if stripped.startswith(fence[0] * len(fence)) and stripped.strip(fence[0]) == "":
            break
    return i


def _markdown(md: list[str], line: int):
    """The markdown segment of these lines, starting at ``line``, numbered by its first line of text."""
    blank = next(i for i, text in enumerate(md) if text.strip())
    return ("markdown", "".join(md), line + blank)


def _segments(body: str):
    """Yield ``("markdown", text, line)`` and ``("code", lang, source, line)`` pieces."""
    lines = body.splitlines(keepends=True)
    md: list[str] = []
    md_line = 1
    i = 0
    while i < len(lines):
        m = _CHUNK_START.match(lines[i].rstrip("\n"))
        if m:
            if "".join(md).strip():
                yield _markdown(md, md_line)
            md = []
            start = i = i + 1
            while i < len(lines) and lines[i].rstrip() != m.group("fence"):
                i += 1
            if i >= len(lines):
                raise RenderError(f"code chunk opened on line {start} is never closed")
            yield ("code", m.group("lang"), "".join(lines[start:i]).rstrip("\n"), start)
            i += 1
            md_line = i + 1
        elif _FENCE.match(lines[i]):
            end = _fenced_block(lines, i)
            md += lines[i:end]
            i = end
        else:
            md.append(lines[i])
            i += 1
    if "".join(md).strip():
        yield _markdown(md, md_line)


def qmd_to_notebook(text: str):
    """The text of a .qmd file as an unexecuted notebook (see the module's description). A first hidden
    notebook cell sets the figure format and defines the inline helper."""
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
    for segment in _segments(body):
        if segment[0] == "markdown":
            _, md, line = segment
            code = markdown_to_code(md)
            if code is None:
                nb_cell = nbformat.v4.new_markdown_cell(md.strip("\n"))
                nb_cell.metadata["qmd"] = {"line": line + offset}
            else:
                nb_cell = nbformat.v4.new_code_cell(code)
                nb_cell.metadata["qmd"] = {"options": {"echo": False}, "role": "inline", "line": line + offset}
        else:
            _, lang, source, line = segment
            if lang != "python":
                raise RenderError(f"line {line + offset}: only python chunks are supported, not {{{lang}}}")
            nb_cell = nbformat.v4.new_code_cell(source)
            nb_cell.metadata["qmd"] = {"options": parse_options(source), "role": "chunk", "line": line + offset}
        nb.cells.append(nb_cell)
    return nb


def describe(nb_cell, index: int) -> str:
    """Where a notebook cell came from in the .qmd, for messages: its chunk's label, inline code, a line."""
    q = nb_cell.metadata.get("qmd", {})
    label = q.get("options", {}).get("label")
    where = f"line {q['line']}" if q.get("line") else f"notebook cell {index}"
    if label:
        return f"chunk '{label}' ({where} of the .qmd)"
    if q.get("role") == "inline":
        return f"inline code in the text at {where} of the .qmd"
    return f"the chunk at {where} of the .qmd"
