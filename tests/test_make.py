"""The documented commands: `make`, `make cell`, `make cells` honour CONFIG, fail in one line and change
nothing when they refuse; a killed `make cell` resumes."""
import io
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
from tests.flow import CELLS
from tests.test_faults import TIME_COLUMNS, _checkpoint_epoch


def test_make_honours_config_and_checks_the_files_first(repo, tmp_path, tool_env):
    """`make CONFIG=f` runs the grid of f merged over the defaults; a config file Snakemake would report
    in a traceback, or without its name, is named in one line before Snakemake starts."""
    out = subprocess.run(["make", "-n", "-f", str(repo / "Makefile"), "report", "CONFIG=tests/smoke.yaml"],
                         cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["carcolor config --no-deep tests/smoke.yaml >/dev/null",
                                            "snakemake --cores all --configfile tests/smoke.yaml"]
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- data\n")
    for name, why in [("nothere.yaml", "does not exist"), ("empty.yaml", "is empty"),
                      ("list.yaml", "the top level is a list")]:
        out = subprocess.run([sys.executable, "-m", "carcolor", "config", "--no-deep", str(tmp_path / name)],
                             cwd=repo, capture_output=True, text=True, env=tool_env)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert str(tmp_path / name) in out.stderr and why in out.stderr and "Traceback" not in out.stderr


def test_a_reader_that_stops_reading_is_no_error(repo, tmp_path, tool_env):
    """`make cells | head -1`, `carcolor config --cells | grep -q`: the reader stops early, and the rest of the
    list meets a closed pipe (reliably once it is longer than the pipe's buffer): no BrokenPipeError."""
    big = tmp_path / "big.yaml"
    big.write_text(f"grid:\n  seeds: {list(range(3000))}\n")
    for reader in ("head -n 1", "grep -q mobilenet_v2-adam-s0"):
        out = subprocess.run(f"{sys.executable} -m carcolor config --no-deep --cells {big} | {reader}", shell=True,
                             cwd=repo, capture_output=True, text=True, env=tool_env)
        assert out.returncode == 0 and out.stderr == "", out.stderr


# ---------------------------------------------------------------------------------------- on a run

def _make(checkout, *args, env, **kw) -> subprocess.CompletedProcess:
    """`make ARGS` in a checkout, with this test's environment as the project's venv (never rebuilt)."""
    venv = Path(sys.prefix)
    return subprocess.run(["make", "-o", str(venv / ".installed"), f"VENV={venv}", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, **kw)


def _state(run_dir: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(run_dir.iterdir())}


@pytest.mark.workflow
@SMOKE
def test_make_cell_without_the_runs_config_refuses_in_one_line_and_changes_nothing(smoke_run, tool_env):
    cell = CELLS[0]
    before = _state(smoke_run / "results" / "runs" / cell)
    out = _make(smoke_run, "cell", f"CELL={cell}", env=tool_env)
    assert out.returncode == 2 and "snakemake" not in out.stdout, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("carcolor")]
    assert len(lines) == 1 and 'results/ was made with CONFIG="tests/smoke.yaml"' in lines[0], lines
    assert _state(smoke_run / "results" / "runs" / cell) == before


@pytest.mark.workflow
@SMOKE
def test_make_cell_refused_by_a_live_run_changes_nothing(smoke_run, tool_env):
    cell = CELLS[1]
    before = _state(smoke_run / "results" / "runs" / cell)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom carcolor import runlock\n"
                               "runlock.hold(sys.argv[1], 'x'); print('held', flush=True); time.sleep(60)",
                               str(smoke_run / ".snakemake" / "carcolor-run.lock")], stdout=subprocess.PIPE, text=True,
                              env=tool_env)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = _make(smoke_run, "cell", f"CELL={cell}", "CONFIG=tests/smoke.yaml", env=tool_env)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode != 0 and "another live process" in out.stderr, out.stderr[-2000:]
    assert _state(smoke_run / "results" / "runs" / cell) == before  # the checkpoint above all


@pytest.mark.workflow
@SMOKE
def test_a_killed_make_cell_resumes_where_it_stopped(smoke_run, tool_env):
    cell = CELLS[2]
    run = smoke_run / "results" / "runs" / cell
    log = smoke_run / "results" / "logs" / "train_cell" / f"{cell}.log"
    metrics = (run / "metrics.csv").read_text()
    venv = Path(sys.prefix)
    proc = subprocess.Popen(["make", "-o", str(venv / ".installed"), f"VENV={venv}", "cell", f"CELL={cell}",
                             "CONFIG=tests/smoke.yaml"], cwd=smoke_run, env=tool_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while _checkpoint_epoch(run) not in (1, 2) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)  # the finished checkpoint says 3 until the re-training's first epoch replaces it
        assert _checkpoint_epoch(run) in (1, 2), "make cell did not re-train from epoch 1"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = _make(smoke_run, "cell", f"CELL={cell}", "CONFIG=tests/smoke.yaml", env=tool_env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"resuming after epoch [12] ", log.read_text()), log.read_text()
    assert (run / "metrics.csv").read_text().split("\n")[0] == metrics.split("\n")[0]
    a, b = pd.read_csv(io.StringIO(metrics)), pd.read_csv(run / "metrics.csv")
    cols = [c for c in a.columns if c not in TIME_COLUMNS]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # the same numbers as the first training
