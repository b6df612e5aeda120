"""A notebook kernel dies with the job that started it, and leaves no file outside .snakemake/."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carcolor import kernels
from tests.flow import stand_in_template


def _slow_notebook(path: Path) -> None:
    """A chunk that records the kernel's pid and writes a file every 0.1 s for a minute."""
    stand_in_template(path, "import os, time\nfrom pathlib import Path\n"
                            "Path(out_dir, 'kernel.pid').write_text(str(os.getpid()))\n"
                            "for i in range(600):\n    Path(out_dir, 'beat').write_text(str(time.time()))\n"
                            "    time.sleep(0.1)\n")


def _gone(pid: int, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (not reaped by its dead parent's reaper yet) is gone too
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return True
        except (FileNotFoundError, IndexError):
            return True
        time.sleep(0.02)
    return False


def test_a_killed_job_takes_its_kernel_with_it_at_once(tmp_path, tool_env):
    notebook = tmp_path / "slow.ipynb"
    _slow_notebook(notebook)
    run = tmp_path / "results" / "runs" / "a-o-s0"
    before = set(Path("/tmp").glob("tmp*.json"))
    job = subprocess.Popen([sys.executable, "-m", "carcolor", "train-cell", "--notebook", str(notebook),
                            "--out", str(run / "train.ipynb"), "--arch", "a", "--optimizer", "o", "--seed", "0",
                            "--prepared", ".", "--settings", json.dumps({"device": "cpu"})],
                           cwd=tmp_path, env=tool_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # its own group, as Snakemake's job would have
    try:
        deadline = time.time() + 120
        while not (run / "kernel.pid").exists() and time.time() < deadline:
            time.sleep(0.1)
        kernel = int((run / "kernel.pid").read_text())
        files = [p for p in (tmp_path / kernels.RUNTIME_DIR).rglob("*.json")]
        assert files, "the kernel's connection file is under .snakemake/carcolor-kernels"
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # Snakemake's process group killed, the kernel's session not
        job.wait()
    assert _gone(kernel, within=0.5), "the kernel outlived its job"
    beat = (run / "beat").stat().st_mtime
    time.sleep(0.5)
    assert (run / "beat").stat().st_mtime == beat, "the kernel kept writing after its job was killed"
    assert set(Path("/tmp").glob("tmp*.json")) <= before, "a connection file was left in /tmp"


def test_the_next_job_removes_the_runtime_files_of_dead_ones(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / kernels.RUNTIME_DIR / str(dead.pid)
    stale.mkdir(parents=True)
    (stale / "tmp123.json").write_text("{}")
    with kernels.runtime_dir(tmp_path) as mine:
        assert mine.name == str(os.getpid()) and mine.is_dir()
        assert not stale.exists()
    assert not mine.exists()


def test_a_killed_render_takes_the_offline_renderers_kernel_with_it(tmp_path, tool_env):
    """The report's kernel, as the cells' kernels: killed with the render job, its connection file under the
    render's build folder, nothing left in /tmp."""
    (tmp_path / "report").mkdir()
    qmd = tmp_path / "report" / "slow.qmd"
    qmd.write_text("---\ntitle: slow\n---\n\n```{python}\nimport os, time\nfrom pathlib import Path\n"
                   "Path('kernel.pid').write_text(str(os.getpid()))\n"
                   "for i in range(600):\n    Path('beat').write_text(str(time.time()))\n    time.sleep(0.1)\n```\n")
    out = tmp_path / "results" / "report"
    before = set(Path("/tmp").glob("tmp*.json"))
    job = subprocess.Popen([sys.executable, "-m", "carcolor", "render", "--qmd", str(qmd), "--renderer", "fallback",
                            "--results", str(tmp_path / "results"), "--out", str(out)], cwd=tmp_path, env=tool_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pid_file = qmd.parent / "kernel.pid"  # the kernel runs in the .qmd's folder
    try:
        deadline = time.time() + 120
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        kernel = int(pid_file.read_text())
        build = out.parent / f".{out.name}.build"
        assert list((build / kernels.RUNTIME_DIR).rglob("*.json")), "the connection file is in the build folder"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert _gone(kernel, within=0.5), "the report's kernel outlived its job"
    beat = (qmd.parent / "beat").stat().st_mtime
    time.sleep(0.5)
    assert (qmd.parent / "beat").stat().st_mtime == beat, "the kernel kept writing after its job was killed"
    assert set(Path("/tmp").glob("tmp*.json")) <= before, "a connection file was left in /tmp"


def _failing(message: str, times: int):
    """A stand-in for a notebook's execution that raises RuntimeError(message) its first `times` calls."""
    calls = []

    def execute():
        calls.append(1)
        if len(calls) <= times:
            raise RuntimeError(message)
        return "ran"

    return execute, calls


def test_a_kernel_that_dies_as_it_starts_is_started_again():
    """Another process may take a port between jupyter_client choosing it and the kernel binding it."""
    died = "Kernel died before replying to kernel_info"
    execute, calls = _failing(died, kernels.KERNEL_STARTS - 1)
    lines = []
    assert kernels.retrying(execute, what="the notebook x", log=lines.append) == "ran"
    assert len(calls) == kernels.KERNEL_STARTS and len(lines) == kernels.KERNEL_STARTS - 1
    assert "died as it started" in lines[0] and f"(2 of {kernels.KERNEL_STARTS})" in lines[0]
    execute, calls = _failing(died, kernels.KERNEL_STARTS)
    with pytest.raises(RuntimeError, match="before replying"):  # the last start's failure is the job's
        kernels.retrying(execute, what="x", log=lines.append)
    execute, calls = _failing("something else", 1)
    with pytest.raises(RuntimeError, match="something else"):  # any other error is not retried
        kernels.retrying(execute, what="x", log=lines.append)
    assert len(calls) == 1
