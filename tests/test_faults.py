"""Kill anything at any moment: the next run of the same command finishes by itself, with the numbers of
an uninterrupted run, no partial file under a final name and no leftovers; one run at a time."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SMOKE
from tests.flow import CELLS, copy_checkout, snakemake, snakemake_cmd

pytestmark = pytest.mark.workflow
# Columns that measure time (they differ between any two runs) or how a run went (resumed or not).
TIME_COLUMNS = {"seconds", "images_per_s", "data_s", "forward_backward_s", "optimizer_s", "train_seconds",
                "mean_epoch_seconds", "train_epoch_seconds", "optimizer_step_ms", "warm_up_s"}
RUN_KEYS = {"prepare_seconds", "list_seconds", "decode_seconds", "images_resumed"}
# provenance.csv: when a cell ran, the CPUs its process was given, the working directory's compile
# cache and the config files of the command differ from run to run; the machine, software and commit
# must not.
RUN_COLUMNS = {"started", "ended", "cpu_usable", "inductor_cache", "rerun"}


def _cell_log(work, cell):
    path = work / "results" / "logs" / "train_cell" / f"{cell}.log"
    return path.read_text() if path.exists() else ""


def _any_cell(work, predicate) -> bool:
    return any(predicate(work / "results" / "runs" / cell, _cell_log(work, cell)) for cell in CELLS)


_EPOCHS: dict = {}  # checkpoint path -> (mtime, epoch), so each version is read once


def _checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of the cell's checkpoint (written by rename, so never read half-written), or None."""
    import torch

    path = run_dir / "checkpoint.pt"
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if _EPOCHS.get(path, (None,))[0] != mtime:
        try:
            _EPOCHS[path] = (mtime, torch.load(path, map_location="cpu", weights_only=False)["epoch"])
        except (OSError, EOFError, RuntimeError):  # replaced while being read: look again next time
            return None
    return _EPOCHS[path][1]


# (moment, condition on the working directory that says the workflow is there now)
MOMENTS = [
    ("generate", lambda w: any((w / "data" / "synthetic").rglob("*.jpg"))
     and not (w / "data" / "synthetic" / "images.csv").exists()),
    ("prepare", lambda w: (w / "results" / "logs" / "prepare_dataset.log").exists()
     and not (w / "data" / "prepared" / "dataset.json").exists()),
    # on the checkpoint itself, not the log line: a smoke epoch takes under a second, so the kill lands
    # after epoch 1 or 2 of 3, and the next run resumes
    ("mid-epoch", lambda w: _any_cell(w, lambda d, log: _checkpoint_epoch(d) in (1, 2))),
    ("after the last epoch", lambda w: _any_cell(w, lambda d, log: (d / "summary.json").exists()
                                                  and not (d / "train.ipynb").exists())),
    ("collect", lambda w: (w / "results" / "logs" / "collect_tables.log").exists()
     and not (w / "results" / "tables" / "summary.csv").exists()),
    ("render", lambda w: (w / "results" / ".report.build").exists()),
]


def _run_until(checkout, workdir, env, condition, timeout=600) -> bool:
    """Start the workflow and SIGKILL it (with every process it started) once condition(workdir) holds."""
    proc = subprocess.Popen(snakemake_cmd(workdir, checkout=checkout), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if condition(workdir):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()  # the notebook kernels die with it (carcolor.kernels)
                return True
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_same_tables(reference_dir, workdir, cells=None) -> None:
    """The tables of two runs agree, times and run-specific provenance aside; with `cells`, those cells'
    rows of the reference (a larger grid) and every row of the other run, comparisons.csv aside (they
    compare a grid's pairs over its seeds)."""
    reference, again = _tables(reference_dir), _tables(workdir)
    assert reference.keys() == again.keys()
    for name, frame in reference.items():
        if isinstance(frame, dict):
            assert frame == again[name], name
        elif cells is None:
            pd.testing.assert_frame_equal(frame, again[name], obj=name)
        elif name != "comparisons.csv":
            if "cell" in frame.columns:
                frame = frame[frame["cell"].isin(cells)].reset_index(drop=True)
            pd.testing.assert_frame_equal(frame, again[name], obj=name)


def _tables(workdir) -> dict:
    tables = workdir / "results" / "tables"
    out = {}
    for path in sorted(tables.glob("*.csv")):
        frame = pd.read_csv(path)
        if "metric" in frame.columns:  # comparisons.csv: the rows that compare times differ as times do
            frame = frame[~frame["metric"].isin(TIME_COLUMNS)].reset_index(drop=True)
        out[path.name] = frame.drop(columns=[c for c in frame.columns if c in TIME_COLUMNS | RUN_COLUMNS])
    info = json.loads((tables / "dataset.json").read_text())
    out["dataset.json"] = {k: v for k, v in info.items() if k not in RUN_KEYS}
    return out


def _ours(stderr: str) -> list[str]:
    """The lines of stderr that are not Snakemake's own notice about the workflow profile."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("Using workflow specific")]


def _leftovers(workdir) -> list[str]:
    names = (".partial", ".tmp", ".failed.ipynb")
    found = [p for p in workdir.rglob("*") if p.name.endswith(names) or p.name in (".work", ".report.build")]
    return [str(p.relative_to(workdir)) for p in found if ".snakemake" not in p.parts]


def test_killed_at_every_stage_the_same_command_finishes_with_the_same_numbers(smoke_run, tmp_path, tool_env):
    """In a folder of its own, with a copy of the checkout as the smoke run has (whose provenance it must
    then match), so that nothing it runs touches the smoke run the other tests use meanwhile."""
    checkout = copy_checkout(tmp_path / "checkout")
    work = tmp_path / "killed"
    work.mkdir()
    hit, logs = [], []  # each job's log is rewritten when it runs again: keep what every run wrote
    for name, condition in MOMENTS:
        if _run_until(checkout, work, tool_env, condition):
            hit.append(name)
        logs += [_cell_log(work, cell) for cell in CELLS]
    assert hit == [name for name, _ in MOMENTS], f"the workflow was killed only at {hit}"
    out = snakemake(checkout, work, env=tool_env)  # the README's command, nothing by hand
    text = out.stdout + out.stderr
    assert "removed the locks of an earlier run that was killed" in text
    assert "Nothing to be done" in snakemake(checkout, work, "-n", env=tool_env).stdout
    # training carried on where it could: from the epoch-1 checkpoint, and without re-training a finished cell
    logs = "\n".join(logs + [_cell_log(work, cell) for cell in CELLS])
    assert re.search(r"resuming after epoch [12] ", logs) and "all 3 epochs were trained already" in logs
    assert_same_tables(smoke_run, work)
    assert _leftovers(work) == []
    assert not list(Path("/tmp").glob("carcolor-report-*"))


def test_a_live_run_makes_another_refuse_in_one_line(repo, tmp_path, tool_env):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom carcolor import runlock\n"
                               "runlock.hold(sys.argv[1], 'x'); print('held', flush=True); time.sleep(60)",
                               str(tmp_path / ".snakemake" / "carcolor-run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = snakemake(repo, tmp_path, env=tool_env, check=False)
        assert out.returncode == 1
        lines = _ours(out.stderr)
        assert len(lines) == 1 and lines[0].startswith("carcolor:") and "another live process" in lines[0], lines
        assert f"pid {holder.pid}" in lines[0]
        assert snakemake(repo, tmp_path, "-n", env=tool_env).returncode == 0  # a dry run only looks
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "data").exists()


def test_unlock_works_as_snakemake_advises(repo, tmp_path, tool_env):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("stale")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--unlock",
                          "--directory", str(tmp_path)], capture_output=True, text=True, env=tool_env)
    assert out.returncode == 0 and "Unlocked" in out.stdout + out.stderr, out.stderr[-2000:]
    assert not list(locks.glob("*.lock"))


@SMOKE
def test_two_runs_started_together_never_crash(repo, smoke_run, tool_env):
    procs = [subprocess.Popen(snakemake_cmd(smoke_run, checkout=smoke_run), env=tool_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert "Traceback" not in stdout + stderr
        if proc.returncode != 0:
            lines = _ours(stderr)
            assert proc.returncode == 1 and len(lines) == 1 and "another live process" in lines[0], stderr
