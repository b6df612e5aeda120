"""One grid cell as an executed notebook: papermill runs experiments/train.ipynb with the cell's parameters.

The executed copy is the cell's literate record. papermill saves it after every notebook cell, so
it is written under a temporary name and renamed when the run succeeds: `train.ipynb` is never a
half-run notebook. The kernel dies with the job, whatever kills it, and keeps its connection file
under .snakemake/ (carcolor.kernels). A failed run keeps its notebook as `train.failed.ipynb` and ends with one line
naming the error (the full traceback is in that notebook and in the log).

Every cell is its own process and notebook kernel, so nothing torch.compile compiled in one cell is
in memory for the next; Inductor's on-disk caches are. `compile_cache_env` points them at one folder
of the working directory, `data/cache/inductor`, shared by the cells of a run and by later runs: the
first cell of an architecture compiles, the next ones load its compiled graphs. The folder is no
input or output of any job and changes no number, only how long a cell's warm-up takes.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from .. import grid, kernels
from ..defaults import REPO
from . import gpus

COMMAND = "train-cell"
# The papermill template, run once per cell.
TEMPLATE = REPO / "experiments" / "train.ipynb"
# What `parameters` passes to the template: its `parameters` chunk must assign each of them.
PARAMETERS = ("arch", "optimizer", "seed", "settings", "prepared", "out_dir")
# Inductor's caches (FX graph and AOT autograd: compiled code and the joint forward/backward graphs,
# Triton's kernels below it on CUDA), relative to the working directory.
COMPILE_CACHE_DIR = "data/cache/inductor"


class CellFailed(RuntimeError):
    """The training notebook raised; the message is its error in one line."""


def parameters(*, arch: str, optimizer: str, seed: int, prepared: str | Path, out_dir: str | Path,
               settings: dict) -> dict:
    """The notebook's parameters (PARAMETERS) for one cell; `settings` is the resolved `train` section."""
    values = {"arch": arch, "optimizer": optimizer, "seed": int(seed), "settings": dict(settings),
              "prepared": str(Path(prepared).resolve()), "out_dir": str(Path(out_dir).resolve())}
    assert tuple(values) == PARAMETERS
    return values


def run_cell(template: str | Path, output: str | Path, params: dict, *, log_output: bool = True) -> Path:
    """Execute the template into `output` (atomically); raise CellFailed with a one-line reason."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    running = output.with_name(f".{output.stem}.partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    failed.unlink(missing_ok=True)
    def execute():
        papermill.execute_notebook(str(template), str(running), parameters=params, kernel_name="python3",
                                   log_output=log_output, progress_bar=False,
                                   extra_arguments=kernels.kernel_arguments())

    try:
        with kernels.runtime_dir():  # the kernel dies with this job; its files stay under .snakemake/
            kernels.retrying(execute, what=f"the notebook {output}", log=_stderr)
    except PapermillExecutionError as exc:
        reason = f"{exc.ename}: {' '.join(str(exc.evalue).split())}"
        kept = _keep(running, failed)
        raise CellFailed(f"{reason} (executed notebook: {kept})" if kept else reason) from None
    except OSError as exc:  # papermill could not save the notebook: the disk is full, say
        running.unlink(missing_ok=True)
        raise CellFailed(f"{type(exc).__name__}: {exc} (while saving the executed notebook)") from None
    except RuntimeError as exc:  # the kernel would not start, even started again
        running.unlink(missing_ok=True)
        raise CellFailed(f"{type(exc).__name__}: {exc} ({kernels.KERNEL_STARTS} starts)") from None
    os.replace(running, output)
    return output


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _keep(running: Path, failed: Path) -> Path | None:
    """The failed run's notebook under its name for the record, or None (and no partial file) when even
    that rename fails."""
    try:
        os.replace(running, failed)
        return failed
    except OSError:
        running.unlink(missing_ok=True)
        return None


def compile_cache_env(environ=None, workdir: str | Path = ".") -> dict[str, str]:
    """The environment variables that give torch.compile in the notebook's kernel a persistent cache:
    TORCHINDUCTOR_CACHE_DIR (COMPILE_CACHE_DIR in workdir) and both on-disk caches switched on
    explicitly. A variable already set in `environ` keeps its value."""
    environ = os.environ if environ is None else environ
    wanted = {"TORCHINDUCTOR_CACHE_DIR": str((Path(workdir) / COMPILE_CACHE_DIR).resolve()),
              "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    return {key: environ.get(key) or value for key, value in wanted.items()}


def run(args) -> int:
    """`carcolor train-cell`: the body of the Snakefile's train_cell rule."""
    start = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # papermill logs the notebook's output
    os.environ.update(compile_cache_env())  # the kernel papermill starts inherits this environment
    params = parameters(arch=args.arch, optimizer=args.optimizer, seed=args.seed, prepared=args.prepared,
                        out_dir=Path(args.out).parent, settings=json.loads(args.settings))
    cell = grid.cell_name(args.arch, args.optimizer, args.seed)
    print(f"carcolor: {gpus.pin(cell, params['settings']['device'])}", file=sys.stderr, flush=True)
    try:
        run_cell(args.notebook, args.out, params)
    except CellFailed as exc:
        print(f"carcolor: cell {cell} failed: {exc}", file=sys.stderr)
        return 1
    print(f"carcolor: cell {cell} done in {time.perf_counter() - start:.1f}s (notebook kernel included)", flush=True)
    return 0


def add_arguments(p) -> None:
    p.add_argument("--notebook", default=str(TEMPLATE), help="the template (default: experiments/train.ipynb)")
    p.add_argument("--out", required=True, help="the executed notebook, results/runs/<cell>/train.ipynb")
    p.add_argument("--arch", required=True)
    p.add_argument("--optimizer", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--prepared", required=True, help="the prepared data folder")
    p.add_argument("--settings", required=True, help="JSON: the resolved train section")


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
