"""The package's own files that a piece of code runs: its imports inside carcolor, followed transitively.

A Snakemake job runs one module (`python -m carcolor.<stage>.<module>`), and the training notebook
and the report run code of their own; what they import decides their results. `closure` reads the
imports from the source (every `import` and `from ... import`, inside functions too), so a stage's
code inputs are computed, never listed: a new import is a new input the moment it is written.

Package data (templates, CSS, Typst) is a module's input when that module names it in a module-level
`PACKAGE_DATA` tuple, paths relative to the module's folder (a folder stands for every file in it);
`package_data()` is how such a module finds those files, so a file it reads is always one it declares.
Nothing here imports the modules it reads: it runs on every snakemake invocation, no-op runs included.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

PACKAGE = "carcolor"
PACKAGE_DIR = Path(__file__).resolve().parent
DATA_NAME = "PACKAGE_DATA"


def module_file(name: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The file of a carcolor module (`carcolor.data.synth` -> data/synth.py, a package -> its
    __init__.py), or None when it is none of the package's."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The absolute module name of a `from X import ...` inside module `current`."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(tree: ast.AST, current: str = PACKAGE, is_package: bool = True) -> set[str]:
    """Every module name an import in `tree` may load: `from a import b` gives a and a.b (b may be
    a module); relative imports are resolved against `current`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, current, is_package)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _parents(name: str) -> list[str]:
    """`carcolor.data.synth` -> carcolor, carcolor.data: importing a module runs its packages' __init__."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.lru_cache(maxsize=None)
def _read(path: Path) -> tuple[frozenset[str], tuple[str, ...]]:
    """The carcolor modules one file imports, and the package data it declares."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    if _is_package(path):
        parts = parts[:-1]
    name = ".".join(parts)
    imports = frozenset(m for m in imported_names(tree, name, _is_package(path)) if module_file(m))
    return imports, _declared_data(tree, path)


def _declared_data(tree: ast.Module, path: Path) -> tuple[str, ...]:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == DATA_NAME for t in targets):
            return tuple(str(p) for p in ast.literal_eval(node.value))
    return ()


def _data_files(module: Path, declared: Iterable[str]) -> list[Path]:
    files = []
    for entry in declared:
        path = module.parent / entry
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{module} declares package data {entry!r}, which does not exist")
    return files


def closure(modules: Iterable[str]) -> list[Path]:
    """The files of `modules`, of every carcolor module they import (transitively, with the
    packages' __init__.py files) and of the package data those modules declare; sorted."""
    todo = [m for name in modules for m in (*_parents(name), name)]
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        imports, declared = _read(path)
        files.update(_data_files(path, declared))
        todo.extend(m for imported in imports for m in (*_parents(imported), imported))
    return sorted(files)


_CHUNK = re.compile(r"^```+\s*\{python[^}]*\}[^\n]*\n(.*?)^```+\s*$", re.M | re.S)


def document_imports(path: str | Path) -> set[str]:
    """The carcolor modules a notebook (.ipynb: its code cells) or a Quarto document (.qmd: its
    python chunks) imports."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    else:
        code = _CHUNK.findall(text)
    names: set[str] = set()
    for source in code:
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        names |= {m for m in imported_names(ast.parse(source, str(path))) if module_file(m)}
    return names


def digest(files: Iterable[Path]) -> str:
    """A short hash of the files' names (relative to the package) and bytes."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(Path(path).resolve().relative_to(PACKAGE_DIR.parent)).encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def package_data(module_file_: str, name: str) -> Path:
    """A data file of the module whose __file__ is given, which it must declare in PACKAGE_DATA."""
    module = Path(module_file_).resolve()
    _, declared = _read(module)
    if not any(name == d or name.startswith(d.rstrip("/") + "/") for d in declared):
        raise KeyError(f"{module.name} reads {name!r} but does not declare it in {DATA_NAME} ({', '.join(declared)})")
    return module.parent / name
