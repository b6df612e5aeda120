import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.flow import REPO, copy_checkout, snakemake

# The xdist group of the tests that change the smoke run, or run Snakemake in it (see smoke_run).
SMOKE = pytest.mark.xdist_group("smoke")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    """In a pytest-xdist worker under --dist loadgroup: every test of an xdist group must carry the group in its
    node id, which is how xdist sends a group to one worker. Where it does not (a pytest that xdist cannot rename
    node ids in), the SMOKE tests would run side by side and change one another's smoke run: stop, saying why."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        print(f"tests/conftest.py: pytest-xdist did not group {len(lost)} tests (e.g. {lost[0]}): this pytest and "
              "pytest-xdist do not work together; install requirements.lock's versions", file=sys.stderr, flush=True)
        raise pytest.UsageError("pytest-xdist's --dist loadgroup does not work with this pytest")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """The environment for running this venv's console scripts (snakemake, carcolor, papermill)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # this checkout's package, whichever checkout the environment's editable install points at
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("MPLBACKEND", "Agg")
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # under `make test`: a make the tests run is not a sub-make
        env.pop(name, None)
    for name in [k for k in env if k.startswith("TORCHINDUCTOR_")]:  # importing torch here may have set them;
        del env[name]  # a user's shell has none, and train-cell then chooses the cells' compile cache
    return env


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, tool_env):
    """One uninterrupted run of the real workflow on the smoke config, in a copy of the checkout run from
    its own folder as a user runs it (`cd carcolor && snakemake`): the reference for the workflow tests.
    A test that edits the workflow's files edits this copy (and puts them back), never the checkout.

    Made once for the whole test run: with pytest-xdist (`make test` runs two workers) the first worker
    that asks makes it while the other waits; the tests that change it or run Snakemake in it share the
    xdist group SMOKE, so they run one after another in one worker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    copy, done = shared / "smoke" / "carcolor", shared / "smoke" / "done"
    with FileLock(str(shared / "smoke.lock")):
        if not done.exists():
            shutil.rmtree(copy.parent, ignore_errors=True)
            copy_checkout(copy)
            snakemake(copy, copy, env=tool_env)
            done.write_text("the smoke run is complete\n")
    return copy


FIXTURE_RESULTS = REPO / "tests" / "fixtures"  # holds tables/, the fixture grid's (tests/fixtures/make_tables.py)


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


@pytest.fixture(scope="session")
def fixture_report(tmp_path_factory):
    """The report of the fixture tables (12 runs: 4 pairs x 3 seeds, a test split), rendered once by the
    offline renderer, with a page for each run next to it as the workflow puts them (the fixture has no
    notebooks: a one-chunk one each). The report's kernel imports carcolor from this checkout.

    Returns html and pdf (paths), renderer, written (what the render left in its output folder and next
    to it), html_text, pdf_text and tables (the tables it was made from)."""
    import nbformat
    from types import SimpleNamespace

    from carcolor import layout
    from carcolor.reporting import pages, render, results

    out = tmp_path_factory.mktemp("fixture-report") / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        made = render.render_report(REPO / "report" / "index.qmd", out, FIXTURE_RESULTS, renderer="fallback",
                                    log=lambda _msg: None)
    written = sorted(str(p.relative_to(out.parent)) for p in out.parent.rglob("*"))
    tables = results.load_tables(FIXTURE_RESULTS)
    notebooks = tmp_path_factory.mktemp("runs")
    for cell in tables.summary["cell"]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(cell)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=f"{cell}\n")])])
        nbformat.write(nb, notebooks / f"{cell}.ipynb")
        pages.export(notebooks / f"{cell}.ipynb", out / layout.page_path(cell), cell)
    return SimpleNamespace(html=made["html"], pdf=made["pdf"], renderer=made["renderer"], written=written,
                           html_text=made["html"].read_text(encoding="utf-8"), pdf_text=pdf_text(made["pdf"]),
                           tables=tables)
