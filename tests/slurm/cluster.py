"""A one-node SLURM cluster on this machine, from Debian's slurm-wlm and munge, for the SLURM test.

Everything lives in one temporary folder (config, munge key and socket, state, logs, pid files) and
listens on free local ports, so it touches no system-wide SLURM or munge set-up. The node declares
2 CPUs and this machine's memory. Accounting is off; slurmctld records every finished job in a
text file (jobcomp/filetxt), which is what the test reads back. Needs root (slurmd starts each job
as its user).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
CPUS = 2


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, host: str, memory_mb: int) -> str:
    return f"""\
ClusterName=carcolor
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobs.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={memory_mb} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the test cluster did not come up: {what} within {timeout:.0f} s")


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _srun_shim(root: Path, conf: Path) -> None:
    """An `srun` that names this cluster's config. Inside a job, snakemake-executor-plugin-slurm-jobstep
    drops every SLURM_* variable, SLURM_CONF included, before its srun; a real cluster's nodes find
    their config in /etc/slurm or from slurmctld (configless), this one's lives in a temp folder."""
    shim = root / "bin" / "srun"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {shutil.which("srun")} "$@"\n')
    shim.chmod(0o755)


def client_env(root: Path, base: dict) -> dict:
    """`base` with this cluster's config and commands (and /usr/sbin, where Debian puts the daemons)."""
    env = dict(base, SLURM_CONF=str(Path(root) / "slurm.conf"))
    env["PATH"] = os.pathsep.join([str(Path(root) / "bin"), base.get("PATH", ""), "/usr/sbin"])
    return env


@contextlib.contextmanager
def one_node_cluster(root: Path):
    """Start munged, slurmctld and slurmd under root; yield the environment for SLURM's commands
    (SLURM_CONF names the config); stop all three afterwards."""
    root = Path(root)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, _memory_mb()))
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    _srun_shim(root, conf)
    env = client_env(root, os.environ)
    daemons = [
        ["munged", "--force", f"--key-file={key}", f"--socket={root}/munge.socket",
         f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
        ["slurmctld", "-i", "-f", str(conf)],  # -i: ignore (absent) saved state
        ["slurmd", "-f", str(conf)],
    ]
    pid_files = [root / "munged.pid", root / "slurmctld.pid", root / "slurmd.pid"]
    try:
        for cmd, pid_file in zip(daemons, pid_files):
            subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            _wait(pid_file.exists, f"{cmd[0]} wrote {pid_file.name}")

        def idle() -> bool:
            out = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True)
            return out.stdout.strip() == "idle"

        _wait(idle, "sinfo shows the node idle")
        yield env
    finally:
        for pid_file in reversed(pid_files):
            _stop(pid_file)


def finished_jobs(root: Path) -> list[dict[str, str]]:
    """slurmctld's record of every finished job (jobcomp/filetxt): one dict of its fields per job."""
    path = Path(root) / "jobs.txt"
    if not path.exists():
        return []
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in path.read_text().splitlines() if line.strip()]
