"""The smoke grid's first seed on a real SLURM cluster (one node, started here from Debian's slurm-wlm and
munge) through `--profile profiles/slurm`: every cell a SLURM job, each cell's numbers those of the local
run, a killed job resumed from its checkpoint by the next run, nothing submitted when nothing changed,
`make cell` one job.

Without SLURM's binaries (or root, which slurmd needs) it is skipped, saying so; under CI it fails instead."""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from carcolor import config as cfgmod
from carcolor import workflow as wf
from carcolor.training.train import RETRAIN
from tests.flow import CELLS, copy_checkout, snakemake, snakemake_cmd

SEED_0 = [cell for cell in CELLS if cell.endswith("-s0")]
from tests.slurm.cluster import client_env, finished_jobs, missing_binaries, one_node_cluster
from tests.test_faults import _checkpoint_epoch, assert_same_tables

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


def _unavailable() -> str | None:
    missing = missing_binaries()
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} not found): "
                f"apt-get install slurm-wlm munge (as .ci/run does)")
    if os.geteuid() != 0:
        return "starting a test cluster needs root (slurmd runs each job as its user)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'"
    return None


@pytest.fixture(scope="session")
def slurm_installed():
    """Skip (fail under CI) before the session's smoke run is made for nothing."""
    why = _unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the SLURM test must run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def cluster(slurm_installed, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    with one_node_cluster(root):
        yield root


def _cmd(checkout, work, nogpu, *args):
    """The README's SLURM command on the smoke config, with a CPU-only cluster (no GPU request), no
    account (the test cluster has none), 2-CPU jobs for the data steps and a status poll every second
    (first after 1 s).
    The checkout is a copy, as the smoke run's is, whose provenance (no commit) the tables must match."""
    return snakemake_cmd(work, "--profile", str(checkout / "profiles" / "slurm"), "--slurm-no-account",
                         "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
                         "--set-threads", "generate_synthetic=2", "prepare_dataset=2", *args,
                         checkout=checkout, config=["tests/smoke.yaml", nogpu])


def _run(cmd, env, check=True):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[3:])} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def _cell_log(work, cell) -> str:
    path = work / "results" / "logs" / "train_cell" / f"{cell}.log"
    return path.read_text() if path.exists() else ""


def _job_of(work, cell) -> str | None:
    m = re.search(r"cell \S+ runs in SLURM job (\d+) ", _cell_log(work, cell))
    return m.group(1) if m else None


def _submitted(out) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", out.stdout + out.stderr)


def _cancel_a_cell_mid_run(work, env, proc, timeout=400) -> tuple[str, str]:
    """Once a cell has its epoch-1 or epoch-2 checkpoint, scancel that cell's SLURM job."""
    import torch  # noqa: F401  (imported now, not in the second in which the checkpoint must be caught)

    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        for cell in SEED_0:
            job = _job_of(work, cell)
            if job and _checkpoint_epoch(work / "results" / "runs" / cell) in (1, 2):
                subprocess.run(["scancel", job], env=env, check=True)
                return cell, job
        time.sleep(0.02)
    raise AssertionError("no cell reached a checkpoint while the first run was alive")


def test_smoke_grid_through_slurm(slurm_installed, repo, smoke_run, cluster, tmp_path, tool_env):
    root = cluster
    env = client_env(root, tool_env)
    nogpu = tmp_path / "cpu-cluster.yaml"  # and one seed of the smoke grid: each pair once
    nogpu.write_text("cluster:\n  gpus_per_job: 0\ngrid:\n  seeds: [0]\n")
    checkout = copy_checkout(tmp_path / "checkout")  # as the smoke run's: a copy, never the smoke run itself
    work = tmp_path / "work"
    work.mkdir()
    cmd = _cmd(checkout, work, nogpu)

    # 1. A cell's SLURM job dies mid-training: that run fails, the same command then finishes the grid.
    start = time.time()
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cancelled_cell, cancelled = _cancel_a_cell_mid_run(work, env, first)
        first_out = first.communicate(timeout=300)[0]
    finally:
        if first.poll() is None:
            first.kill()
    print(f"\nfirst run, until a cell was cancelled and the other running jobs ended: {time.time() - start:.0f} s")
    assert first.returncode != 0, first_out[-3000:]
    assert re.search(rf"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED", first_out), first_out[-3000:]
    start = time.time()
    second = _run(cmd, env)
    resumed = _cell_log(work, cancelled_cell)
    assert re.search(r"resuming after epoch [12] |all 3 epochs were trained already", resumed), resumed[-2000:]
    assert _job_of(work, cancelled_cell) != cancelled

    # 2. Every job ran in SLURM: each cell's log names its job, slurmctld recorded it as completed, and the
    # plugin's log of it lies under results/logs/slurm/; the tables and the report are made locally.
    records = {r["JobId"]: r for r in finished_jobs(root)}
    assert records[cancelled]["JobState"] == "CANCELLED"
    smoke = cfgmod.load(repo / "tests" / "smoke.yaml")
    asked = f"cpu={smoke['train']['threads']},mem={wf.train_mem_mb(smoke)}M,"  # train.threads, the computed memory
    for cell in SEED_0:
        job = _job_of(work, cell)
        assert job and records[job]["JobState"] == "COMPLETED", (cell, job, records.get(job))
        assert records[job]["Tres"].startswith(asked), (asked, records[job])
        assert list((work / "results" / "logs" / "slurm" / "rule_train_cell").rglob(f"{job}.log")), cell
    for rule in ("generate_synthetic", "prepare_dataset"):
        assert list((work / "results" / "logs" / "slurm" / f"rule_{rule}").rglob("*.log")), rule
    assert len(records) == 2 + len(SEED_0) + 1  # generate, prepare, the cells, the cancelled one
    assert "(Rule: collect_tables)" in second.stdout + second.stderr
    assert_same_tables(smoke_run, work, cells=SEED_0)  # the cells' numbers are the local run's
    assert (work / "results" / "report" / "index.pdf").exists()
    print(f"the same command again, to the end: {time.time() - start:.0f} s")

    # 3. Nothing changed: nothing is submitted.
    start = time.time()
    again = _run(cmd, env)
    print(f"the same command once more (nothing to do): {time.time() - start:.0f} s")
    assert "Nothing to be done" in again.stdout + again.stderr and not _submitted(again)
    assert len(finished_jobs(root)) == len(records)

    # 4. `make cell`'s recipe: exactly one SLURM job, for that cell; then the tables and the report.
    cell = SEED_0[-1]
    before = _job_of(work, cell)
    start = time.time()
    one = _run(_cmd(checkout, work, nogpu, "--forcerun", f"results/runs/{cell}/train.ipynb"), {**env, RETRAIN: cell})
    print(f"make cell's recipe: {time.time() - start:.0f} s")
    assert len(_submitted(one)) == 1, one.stderr[-3000:]
    new = [r for r in finished_jobs(root) if r["JobId"] not in records]
    assert [r["JobId"] for r in new] == [_job_of(work, cell)] != [before]
    text = one.stdout + one.stderr
    assert "(Rule: collect_tables)" in text and "(Rule: render_report)" in text
    assert "Nothing to be done" in snakemake(checkout, work, "-n", env=env, config=["tests/smoke.yaml", nogpu]).stdout
    assert _cell_log(work, cell).count("epoch 1/3") == 1  # trained again from epoch 1, not reused
