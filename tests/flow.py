"""Helpers for the workflow tests: the README's snakemake command on the smoke config, dry-run plans."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CELLS = [f"{arch}-{optimizer}-s{seed}" for arch in ("mobilenet_v2", "mobilenet_v1") for optimizer in ("adam", "adamax")
         for seed in (0, 1)]  # tests/smoke.yaml's grid


def snakemake_cmd(workdir, *args, snakefile=REPO / "Snakefile", config="tests/smoke.yaml", cores="2"):
    """The README's command (`snakemake --cores all`), on the smoke config, in workdir."""
    config = [config] if isinstance(config, (str, Path)) else list(config or [])
    configs = ["--configfile", *(str(REPO / c) for c in config)] if config else []
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--cores", cores, *configs,
            "--directory", str(workdir), *args]


def snakemake(repo, workdir, *args, env, config="tests/smoke.yaml", check=True, snakefile=None):
    cmd = snakemake_cmd(workdir, *args, snakefile=snakefile or repo / "Snakefile", config=config)
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
