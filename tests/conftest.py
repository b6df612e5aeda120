import os
import sys
from pathlib import Path

import pytest

from tests.flow import REPO, copy_checkout, snakemake


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
    for name in [k for k in env if k.startswith("TORCHINDUCTOR_")]:  # importing torch here may have set them;
        del env[name]  # a user's shell has none, and train-cell then chooses the cells' compile cache
    return env


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, tool_env):
    """One uninterrupted run of the real workflow on the smoke config, in a copy of the checkout run from
    its own folder as a user runs it (`cd carcolor && snakemake`): the reference for the workflow tests.
    A test that edits the workflow's files edits this copy (and puts them back), never the checkout."""
    copy = copy_checkout(tmp_path_factory.mktemp("smoke") / "carcolor")
    snakemake(copy, copy, env=tool_env)
    return copy
