"""Code inputs are derived from the imports, and imports flow one way.

A rule's code inputs are what carcolor.sources reads from its module's imports (and its documents'),
so this file holds them against an independent reading, the standard library's modulefinder, which
follows the imports of the compiled code. The workflow test edits every file of the package in
turn, on a copy of the checkout, and checks that the dry-run plan re-runs exactly the rules whose
code imports it, and what follows them.
"""
import ast
import importlib
import json
import modulefinder
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from carcolor import sources
from carcolor import workflow as wf
from tests.conftest import SMOKE
from tests.flow import CELLS, REPO, planned, snakemake

PACKAGE = REPO / "carcolor"
STAGES = ("data", "training", "analysis", "reporting", "reproduction")  # in the order of the DAG
# The flat core that every stage may use; it imports no stage.
BASE = {"atomic", "command", "defaults", "grid", "kernels", "layout", "provenance", "requirements", "runlock",
        "sources"}
# The flat core that drives the stages (the command line, the config checks, the Snakefile's helpers):
# it may import any stage, and nothing but itself imports it.
TOP = {"__main__", "cli", "checks", "config", "workflow"}
PER_CELL = {"train_cell", "cell_page"}
WORKERS = 2


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def _place(module: str) -> tuple[str, int]:
    """('base'|'top'|'stage', rank): a stage's rank is its position in STAGES."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base", -1  # carcolor/__init__.py
    if parts[1] in STAGES:
        return "stage", STAGES.index(parts[1])
    if parts[1] in BASE:
        return "base", -1
    assert parts[1] in TOP, f"{module} is a new core module: add it to BASE or TOP in this test"
    return "top", len(STAGES)


def test_imports_point_from_later_stages_to_earlier_ones_and_to_the_core():
    wrong = []
    for module, path in _modules().items():
        kind, rank = _place(module)
        is_package = path.name == "__init__.py"
        for imported in sources.imported_names(ast.parse(path.read_text()), module, is_package):
            if not sources.module_file(imported) or imported == "carcolor":
                continue
            other, other_rank = _place(imported)
            if other == "top" and kind != "top":
                wrong.append(f"{module} imports {imported}, which drives the stages")
            elif kind == "base" and other == "stage":
                wrong.append(f"{module} (core) imports the stage module {imported}")
            elif kind == "stage" and other == "stage" and other_rank > rank:
                wrong.append(f"{module} imports {imported}, of a later stage")
    assert not wrong, "\n".join(wrong)


def test_every_data_file_of_the_package_is_declared_by_the_module_that_reads_it():
    declared = set()
    for module, path in _modules().items():
        if module.endswith("__main__"):
            continue  # runs the command line when imported; declares nothing
        mod = importlib.import_module(module)
        for entry in getattr(mod, sources.DATA_NAME, ()):
            target = path.parent / entry
            declared |= {p for p in target.rglob("*") if p.is_file()} if target.is_dir() else {target}
    data = {p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
            and "__pycache__" not in p.parts}
    assert data and data == declared, sorted(map(str, data ^ declared))


def test_a_module_cannot_read_package_data_it_does_not_declare():
    from carcolor.reporting import pages

    with pytest.raises(KeyError, match="does not declare"):
        sources.package_data(pages.__file__, "style.css")


def _finder_closure(module: str | None = None, script: Path | None = None, root: Path = REPO) -> set[Path]:
    """The carcolor files `module` (or the file `script`) imports, by modulefinder: it follows the
    bytecode's imports, inside functions too, on a path that holds this checkout alone."""
    finder = modulefinder.ModuleFinder(path=[str(root)])
    if module:
        finder.import_hook(module)
    if script:
        finder.run_script(str(script))
    return {Path(m.__file__) for name, m in finder.modules.items()
            if name.split(".")[0] == "carcolor" and m.__file__}


def _document_code(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(re.findall(r"```\{python\}\n(.*?)\n```", path.read_text(), re.S))


def expected_files(rule: str, root: Path = REPO) -> set[Path]:
    """A rule's code files by modulefinder, with the package data their modules declare."""
    module, documents = wf.entry_module(rule), wf.ENTRY[rule][1]
    files = _finder_closure(module, root=root)
    for doc in documents:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp, "document.py")
            script.write_text(_document_code(root / doc))
            files |= _finder_closure(script=script, root=root)
    for path in list(files):
        text = path.read_text()
        m = re.search(rf"^{sources.DATA_NAME} = (\(.*?\))$", text, re.M)
        for entry in ast.literal_eval(m.group(1)) if m else ():
            target = path.parent / entry
            files |= {p for p in target.rglob("*") if p.is_file()} if target.is_dir() else {target}
    return files


@pytest.mark.parametrize("rule", sorted(wf.ENTRY))
def test_code_inputs_are_what_the_rules_code_imports(rule):
    derived = set(wf.code_files(rule))
    assert derived == expected_files(rule), sorted(map(str, derived ^ expected_files(rule)))
    assert PACKAGE / "cli.py" not in derived and PACKAGE / "workflow.py" not in derived


def _downstream(checkout: Path, env) -> dict[str, set[str]]:
    """Each rule and the rules after it, from Snakemake's own rule graph of the smoke config."""
    out = snakemake(checkout, checkout, "--rulegraph", env=env)
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", out.stdout, re.M))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", out.stdout, re.M)]
    after = {name: {name} for name in names.values()}
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            if not after[b] <= after[a]:
                after[a] |= after[b]
                changed = True
    return {name: rules - {"all"} for name, rules in after.items() if name != "all"}


def _plan_after_editing(checkout: Path, relative: Path, env) -> dict[str, int]:
    """The dry-run plan once `relative` has changed (its bytes, nothing else: Snakemake compares
    checksums too), with the file put back as it was, bytes and times, afterwards."""
    path = checkout / relative
    text, stat = path.read_bytes(), path.stat()
    path.write_bytes(text + b"\n")
    try:
        return planned(snakemake(checkout, checkout, "-n", env=env))
    finally:
        path.write_bytes(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.workflow
@SMOKE
def test_editing_a_file_reruns_exactly_the_rules_that_import_it(smoke_run, tool_env, tmp_path):
    """Every file of the package, edited in turn in copies of the checkout that has run the smoke grid
    (two copies, half the files each, side by side: a dry run takes seconds, and there are many; never
    the smoke run itself, which other tests run from at the same time)."""
    after = _downstream(smoke_run, tool_env)
    users = {rule: {p.relative_to(smoke_run) for p in expected_files(rule, smoke_run)} for rule in after}
    files = sorted(p.relative_to(smoke_run) for p in (smoke_run / "carcolor").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    assert len(files) > 30
    copies = [tmp_path / f"copy{i}" for i in range(WORKERS)]
    for copy in copies:  # the run's metadata and outputs too, times kept: the same plans
        shutil.copytree(smoke_run, copy, symlinks=True, ignore=shutil.ignore_patterns("checkpoint.pt"))
    expected = {}
    for relative in files:
        expected[relative] = {}
        for rule, code in users.items():
            if relative in code:
                expected[relative].update({r: len(CELLS) if r in PER_CELL else 1 for r in after[rule]})
    shares = [files[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(lambda job: {f: _plan_after_editing(job[0], f, tool_env) for f in job[1]},
                           zip(copies, shares))
        plans = {f: plan for share in results for f, plan in share.items()}
    wrong = [f"{f}: planned {plans[f]}, expected {expected[f]}" for f in files if plans[f] != expected[f]]
    assert not wrong, "\n".join(wrong)
    assert all("Nothing to be done" in snakemake(copy, copy, "-n", env=tool_env).stdout for copy in copies)
