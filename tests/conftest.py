import os
import sys
from pathlib import Path

import pytest

from tests.flow import REPO, snakemake


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """The environment for running this venv's console scripts (snakemake, carcolor, papermill)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    for name in [k for k in env if k.startswith("TORCHINDUCTOR_")]:  # importing torch here may have set them;
        del env[name]  # a user's shell has none, and train-cell then chooses the cells' compile cache
    return env


@pytest.fixture(scope="session")
def smoke_run(repo, tmp_path_factory, tool_env):
    """One uninterrupted run of the real workflow on the smoke config: the reference for the workflow tests."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(repo, workdir, env=tool_env)
    return workdir
