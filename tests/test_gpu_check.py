"""benchmarks/gpu_check.py, the GPU acceptance run: its verdict rules and projection on given numbers,
and its CPU smoke path end to end (toy sizes, the scaled grid through the real Snakefile)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from tests.flow import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("benchmark_gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _machine(name: str, gpu_check) -> dict:
    known = gpu_check.card_bandwidth(name)
    return {"device": name, "bandwidth_card": known and known[0], "bandwidth_tb_s": known and known[1]}


def _rows(v2: float) -> list[dict]:
    return [{"arch": "mobilenet_v2", "mode": "eager", "images_per_s": v2 / 2, "warm_up_s": 1.0},
            {"arch": "mobilenet_v2", "mode": "compiled", "images_per_s": v2, "warm_up_s": 60.0}]


def test_without_a_gpu_it_says_so_and_exits_0(gpu_check, capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert "No CUDA GPU found" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, card, tb_s", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 3.35), ("NVIDIA H100 PCIe", "H100 PCIe", 2.0),
    ("NVIDIA H200", "H200", 4.8), ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 2.039),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB", 1.555), ("NVIDIA A10G", "A10 / A10G", 0.6),
    ("NVIDIA L4", "L4", 0.3), ("Tesla T4", "T4", 0.32)])
def test_cards_are_matched_to_their_bandwidth(gpu_check, name, card, tb_s):
    assert gpu_check.card_bandwidth(name) == (card, tb_s)


def test_the_goal_is_named_only_on_an_h100(gpu_check):
    grid = {"first_run_s": 540.0}
    h100 = gpu_check.verdicts(_machine("NVIDIA H100 80GB HBM3", gpu_check), _rows(10_500), grid, smoke=False)
    assert h100[0].startswith("MobileNetV2 10,500 training images/s: meets the goal of 10,000 images/s, set for")
    assert "9.0 min" in h100[1] and "meets the goal of 10 min" in h100[1]
    slow = gpu_check.verdicts(_machine("NVIDIA H100 80GB HBM3", gpu_check), _rows(9_000), None, smoke=False)
    assert "misses the goal of 10,000" in slow[0] and len(slow) == 1
    # another card: the goal scaled by bandwidth, said to be scaled; 10,000 x 4.8 / 3.35 = 14,328
    h200 = gpu_check.verdicts(_machine("NVIDIA H200", gpu_check), _rows(12_000), grid, smoke=False)
    assert "scaled by memory bandwidth" in h200[0] and "14,328 images/s, which this run misses" in h200[0]
    assert "meets the goal" not in " ".join(h200)
    a100 = gpu_check.verdicts(_machine("NVIDIA A100-SXM4-40GB", gpu_check), _rows(5_000), grid, smoke=False)
    assert "4,642 images/s, which this run meets" in a100[0]  # 10,000 x 1.555 / 3.35
    unknown = gpu_check.verdicts(_machine("Some New Card", gpu_check), _rows(50_000), grid, smoke=False)
    assert unknown[0].endswith("'Some New Card' is not in the table of memory bandwidths used to scale it to "
                               "other cards.") and "No verdict" in unknown[0]


def test_projection_is_fixed_cost_plus_images_over_rates(gpu_check):
    cells = [{"cell": f"{a}-{o}-s0", "arch": a, "fixed_s": 10.0, "warm_up_s": 2.0, "eval_images_per_s": 22_000.0}
             for a in ("mobilenet_v2", "mobilenet_v1") for o in ("adam", "adamax")]
    rows = [{"arch": "mobilenet_v2", "mode": "compiled", "images_per_s": 11_000.0, "warm_up_s": 52.0},
            {"arch": "mobilenet_v1", "mode": "compiled", "images_per_s": 22_000.0, "warm_up_s": 42.0}]
    p = gpu_check.project({"cells": cells}, rows)
    assert (p["N_train"], p["N_eval"], p["epochs"], p["seeds"]) == (110_000, 22_000, 10, 1)  # paper.yaml's
    # per V2 cell 10 + 10 x (10 + 1) = 120 s, per V1 cell 10 + 10 x (5 + 1) = 70 s
    assert p["warm_cache_s"] == pytest.approx(2 * 120 + 2 * 70)
    assert p["cold_compile_extra_s"] == pytest.approx(50 + 40)
    assert p["first_run_s"] == pytest.approx(380 + 90)
    assert "[10.0 + 10 x (110000 / 11000 + 22000 / 22000)]" in p["formula"] and p["formula"].endswith("= 470 s")
    # the paper's cache (132,000 images at 224 px, 19.87 GB) is larger than the grid's (5,500, 0.83 GB):
    # each cell that keeps it on the GPU copies 19.04 GB more, here at 10 GB/s
    grid = {"cells": [{**c, "data_on_device": True} for c in cells],
            "config": {"data": {"colours": ["c"] * 11, "n_train_per_colour": 400, "n_val_per_colour": 50,
                                "n_test_per_colour": 50, "image_size": 224}}}
    with_copy = gpu_check.project(grid, rows, {"pinned staging (to_device) GB/s": 10.0})
    assert with_copy["cache_copy_extra_s"] == pytest.approx(4 * (132_000 - 5_500) * 224 * 224 * 3 / 1e10)
    assert with_copy["warm_cache_s"] == pytest.approx(380 + with_copy["cache_copy_extra_s"])


@pytest.mark.workflow
def test_cpu_smoke_runs_every_part_and_writes_json_and_markdown(gpu_check, tmp_path, tool_env, monkeypatch):
    for key, value in tool_env.items():
        monkeypatch.setenv(key, value)
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["machine"]["torch"] == torch.__version__
    assert {(r["arch"], r["mode"]) for r in result["throughput"]} == {
        (a, m) for a in ("mobilenet_v2", "mobilenet_v1") for m in ("eager", "compiled")}
    assert all(r["images_per_s"] > 0 and r["warm_up_s"] > 0 for r in result["throughput"])
    assert all(v > 0 for k, v in result["copy"].items() if k.endswith("GB/s"))
    cells = result["grid"]["cells"]
    assert sorted(c["cell"] for c in cells) == sorted(f"{a}-{o}-s0" for a in ("mobilenet_v2", "mobilenet_v1")
                                                      for o in ("adam", "adamax"))
    assert all(c["wall_s"] > c["epochs_s"] > 0 and c["fixed_s"] > 0 for c in cells)
    assert (tmp_path / "grid" / "results" / "report" / "index.html").exists()  # end to end
    assert result["projection"]["first_run_s"] > 0 and result["verdicts"] == ["CPU smoke run: toy sizes, no verdict."]
    md = (tmp_path / "gpu_check.md").read_text()
    for heading in ("## Copying", "## Training throughput", "## Scaled paper grid", "## Projected paper grid",
                    "## Verdict"):
        assert heading in md
    assert result["projection"]["formula"] in md
