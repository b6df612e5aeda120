"""Every GPU of one machine: each training job pinned to its own GPU before its kernel starts, never two
jobs on one, and none idle while a job waits. Checked without GPUs: CARCOLOR_GPUS pretends N of them."""
import json
import os
import subprocess
import sys
import time

import pytest

from carcolor import config as cfgmod
from carcolor import workflow as wf
from carcolor.training import gpus
from tests.flow import stand_in_template
N = 2  # pretended GPUs; N + 1 jobs start together, so one of them has to wait


def _recording_notebook(path):
    """A stand-in for experiments/train.ipynb: the kernel records the GPU it sees and when, and sleeps."""
    stand_in_template(path, "import json, os, time\nfrom pathlib import Path\n"
                            "start = time.time()\ntime.sleep(3)\n"
                            "Path(out_dir, 'gpu.json').write_text(json.dumps({'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
                            "                                               'start': start, 'end': time.time()}))")


def test_n_plus_one_jobs_share_n_gpus_one_job_per_gpu(repo, tmp_path, tool_env):
    notebook = tmp_path / "record.ipynb"
    _recording_notebook(notebook)
    env = {k: v for k, v in tool_env.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env[gpus.PRETEND] = str(N)
    env["PYTHONPATH"] = str(repo)  # this checkout's carcolor, as the Snakefile arranges for its jobs
    settings = json.dumps({"device": "cuda", "threads": 1})
    procs = [subprocess.Popen([sys.executable, "-m", "carcolor", "train-cell", "--notebook", str(notebook),
                               "--out", f"results/runs/c{i}/train.ipynb", "--arch", "a", "--optimizer", "o",
                               "--seed", str(i), "--prepared", ".", "--settings", settings],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(N + 1)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    runs = [json.loads((tmp_path / f"results/runs/c{i}/gpu.json").read_text()) for i in range(N + 1)]
    assert sorted({r["gpu"] for r in runs}) == [str(i) for i in range(N)], runs  # every GPU used, no other id
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["gpu"] == b["gpu"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], f"two jobs on GPU {a['gpu']}: {runs}"
    waited = [out for out in outputs if "waiting for one" in out]
    assert len(waited) == 1, outputs  # the (N+1)th job waited for a GPU instead of sharing one
    for i, out in enumerate(outputs):
        assert f"cell a-o-s{i} runs on GPU {runs[i]['gpu']} (CUDA_VISIBLE_DEVICES={runs[i]['gpu']}" in out, out


def test_claim_takes_the_first_free_id_and_the_lock_dies_with_its_holder(repo, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom carcolor.training import gpus\n"
                               "print(gpus.claim(['0', '1'], sys.argv[1]), flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert holder.stdout.readline().strip() == "0"
        script = "import sys\nfrom carcolor.training import gpus\nprint(gpus.claim(['0', '1'], sys.argv[1]))"
        taken = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=repo)
        assert taken.stdout.strip() == "1"
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    again = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=repo)
    assert again.stdout.strip() == "0"  # killed: its GPU is free again, nothing to clean up by hand


def test_slurm_and_cpu_jobs_keep_their_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.PRETEND, "4")
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    monkeypatch.setenv("SLURMD_NODENAME", "node1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpus.pin("c", "cuda", tmp_path) == "cell c runs in SLURM job 17 on node1 (GPUs: 3)"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and not list(tmp_path.iterdir())  # SLURM chose it
    monkeypatch.delenv("SLURM_JOB_ID")
    assert gpus.pin("c", "cpu", tmp_path) == "cell c runs on the CPU"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


@pytest.mark.parametrize("listed, ids", [("", []), ("2,3", ["2", "3"]), ("GPU-ab, GPU-cd", ["GPU-ab", "GPU-cd"])])
def test_visible_ids_follow_cuda_visible_devices(monkeypatch, listed, ids):
    monkeypatch.delenv(gpus.PRETEND, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert gpus.visible_ids() == ids


def test_on_a_cluster_the_cluster_allocates_the_gpus(tmp_path):
    """There a cell asks SLURM for cluster.gpus_per_job GPUs (--gres), and no machine-wide `gpu` count
    caps how many cells the cluster runs at once."""
    nvidia = tmp_path / "nvidiactl"
    nvidia.touch()
    cfg = cfgmod.validate({"data": {"colours": ["Black", "White"]}, "grid": {}, "train": {}})
    assert wf.gpus_per_cell(cfg, str(nvidia)) == 1 and wf.gpus_per_cell(cfg, str(tmp_path / "none")) == 0
    assert wf.gpus_per_cell(cfg, str(nvidia), cluster=True) == 0
    assert wf.cell_gres(cfg, cluster=True) == "gpu:1" and wf.cell_gres(cfg) == ""
    cfg["cluster"]["gpus_per_job"] = 0
    assert wf.cell_gres(cfg, cluster=True) == ""
