"""Same configuration, same bytes, whatever the folder held before.

One folder goes through a seeded random sequence of configuration changes (data, drawing, grid and
training settings), some runs killed with SIGKILL at a random moment; then the prepared data and the
tables of its last configuration must be byte-identical (times aside) to a fresh folder's run of it.
"""
import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMOKE
from tests.flow import copy_checkout, snakemake, snakemake_cmd
from tests.test_faults import RUN_KEYS, assert_same_tables

pytestmark = pytest.mark.workflow
SEED = 20261207
STEPS = 6
# A grid of a few cells on a few colours, so that a step takes seconds.
BASE = {"data": {"colours": ["Black", "White", "Red"], "n_train_per_colour": 8, "n_val_per_colour": 4,
                 "n_test_per_colour": 4, "image_size": 32, "seed": 0},
        "synthetic": {"adverts_per_colour": 8, "photos_per_advert": 3, "seed": 0},
        "grid": {"archs": ["mobilenet_v2"], "optimizers": ["adam", "adamax"], "seeds": [0]},
        "train": {"epochs": 2, "threads": 1, "batch_size": 8, "eval_batch_size": 64, "lr": 0.001}}
# What a step may change: (section, key, the values it may take).
CHANGES = [
    ("data", "colours", [["Black", "White", "Red"], ["Black", "White", "Blue"], ["Red", "Blue", "Green", "White"]]),
    ("data", "image_size", [24, 32]),
    ("data", "n_train_per_colour", [8, 10]),
    ("data", "seed", [0, 1]),
    ("synthetic", "seed", [0, 1]),
    ("synthetic", "adverts_per_colour", [8, 10]),
    ("synthetic", "photos_per_advert", [3, 4]),
    ("grid", "archs", [["mobilenet_v2"], ["mobilenet_v1"]]),
    ("grid", "optimizers", [["adam", "adamax"], ["adamax"]]),
    ("grid", "seeds", [[0], [1], [0, 1]]),
    ("train", "epochs", [1, 2]),
    ("train", "lr", [0.001, 0.0005]),
]
UNTIL = ("--until", "collect_tables")  # the prepared data and the tables; the report is another test's
# data/prepared/dataset.json records how fast the run decoded, too
PREPARE_RUN_KEYS = RUN_KEYS | {"decode_images_per_s", "decode_images_per_s_per_worker"}


def _config(path: Path, config: dict) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _run(work: Path, config: Path, env, kill_after: float | None) -> str:
    """The workflow up to the tables, to the end or SIGKILLed (with all it started) after kill_after s."""
    proc = subprocess.Popen(snakemake_cmd(work, *UNTIL, checkout=work, config=[config]), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "killed"
    assert proc.returncode == 0, out[-4000:]
    return "finished"


def _prepared(work: Path) -> dict:
    """The prepared data: every array and the manifest as bytes, dataset.json without its run times."""
    folder = work / "data" / "prepared"
    out = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".npy", ".csv")}
    info = json.loads((folder / "dataset.json").read_text())
    out["dataset.json"] = {k: v for k, v in info.items() if k not in PREPARE_RUN_KEYS}
    return out


def test_a_folders_history_never_reaches_a_later_result(tmp_path, tool_env):
    rng = random.Random(SEED)
    work = copy_checkout(tmp_path / "history")
    config, current, steps = work / "mine.yaml", json.loads(json.dumps(BASE)), []
    for step in range(STEPS):
        for section, key, values in rng.sample(CHANGES, rng.choice([1, 2])):
            current[section][key] = rng.choice(values)
        _config(config, current)
        kill_after = rng.uniform(3.0, 25.0) if step < STEPS - 1 and rng.random() < 0.5 else None
        steps.append((json.loads(json.dumps(current)), _run(work, config, tool_env, kill_after)))
    assert steps[-1][1] == "finished" and any(outcome == "killed" for _, outcome in steps), steps
    assert len({json.dumps(c, sort_keys=True) for c, _ in steps}) > 2, steps

    fresh = copy_checkout(tmp_path / "fresh")
    shutil.copy(config, fresh / "mine.yaml")
    _run(fresh, fresh / "mine.yaml", tool_env, None)
    assert _prepared(work) == _prepared(fresh), steps
    assert_same_tables(fresh, work)


@SMOKE
def test_an_earlier_draw_leaks_into_no_later_preparation(smoke_run, tmp_path, tool_env):
    """After the smoke run, another drawing seed: the preparation must be a fresh folder's, byte for byte."""
    reseeded = tmp_path / "reseeded.yaml"
    reseeded.write_text("synthetic: {seed: 1}\n")
    after = tmp_path / "after"
    shutil.copytree(smoke_run, after, symlinks=True)  # with the smoke run's draw, cache and results
    results = []
    for work in (after, copy_checkout(tmp_path / "fresh")):
        snakemake(work, work, "--until", "prepare_dataset", env=tool_env, config=["tests/smoke.yaml", reseeded])
        results.append(_prepared(work))
        photos = sorted(p.name for p in (work / "data" / "synthetic" / "resized_DVM").rglob("*.jpg"))
        results.append(photos)
    assert results[0] == results[2] and results[1] == results[3]
