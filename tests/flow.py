"""Helpers for the workflow tests: the README's snakemake command on the smoke config, dry-run plans,
and copies of the checkout (a test that edits the workflow's files edits a copy, never the checkout)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CELLS = [f"{arch}-{optimizer}-s{seed}" for arch in ("mobilenet_v2", "mobilenet_v1") for optimizer in ("adam", "adamax")
         for seed in (0, 1)]  # tests/smoke.yaml's grid
# What a copy of the checkout leaves out: the history and what git ignores (at the top: the package
# has a data/ of its own), anywhere: caches.
TOP_LEVEL_ONLY = {".git", ".venv", "results", "data", ".snakemake", ".pytest_cache"}
ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def _not_copied(folder: str, names: list[str]) -> set[str]:
    top = {n for n in names if n in TOP_LEVEL_ONLY} if Path(folder) == REPO else set()
    return top | set(ANYWHERE(folder, names))


def copy_checkout(dest: Path) -> Path:
    """A copy of this checkout's files (as they are, uncommitted changes too) at dest."""
    shutil.copytree(REPO, dest, ignore=_not_copied)
    assert (dest / "carcolor" / "data" / "__init__.py").is_file()
    return dest


def snakemake_cmd(workdir, *args, checkout=REPO, config="tests/smoke.yaml", cores="2"):
    """The README's command (`snakemake --cores all`), on the smoke config, in workdir, with the
    Snakefile of `checkout`; config files are relative to the checkout."""
    config = [config] if isinstance(config, (str, Path)) else list(config or [])
    configs = ["--configfile", *(str(Path(checkout) / c) for c in config)] if config else []
    return [sys.executable, "-m", "snakemake", "-s", str(Path(checkout) / "Snakefile"), "--cores", cores, *configs,
            "--directory", str(workdir), *args]


def snakemake(checkout, workdir, *args, env, config="tests/smoke.yaml", check=True):
    cmd = snakemake_cmd(workdir, *args, checkout=checkout, config=config)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


def planned(out) -> dict[str, int]:
    """The job counts of a dry run's 'Job stats' table ({} when there is nothing to be done)."""
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    counts = {}
    for line in text.split("Job stats:", 1)[-1].splitlines():
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if m and m.group(1) not in ("total", "all"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def stand_in_template(path: Path, code: str) -> Path:
    """A stand-in for experiments/train.ipynb at path: a parameters cell assigning the notebook's
    parameters (None each, papermill's values replace them), then one chunk of `code`."""
    import nbformat

    from carcolor.training.notebook import PARAMETERS

    params = nbformat.v4.new_code_cell("".join(f"{name} = None\n" for name in PARAMETERS))
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path
