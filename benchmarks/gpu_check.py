"""The GPU acceptance run: is this card as fast as the design says, and how long will the paper grid take?

    python benchmarks/gpu_check.py                # on a CUDA machine: sized for under 8 minutes
    python benchmarks/gpu_check.py --parts model,copy,throughput    # no grid, no projection
    python benchmarks/gpu_check.py --cpu-smoke    # every part on the CPU at toy size (a test runs it)

One command, five parts, everything written to results/gpu_check/ (gpu_check.json, gpu_check.md):

1. The machine: card, driver, CUDA, PyTorch, cuDNN, and the card's memory bandwidth from a table of
   datasheet values.
2. Model: MACs and memory traffic of one training image (counted on the CPU), and the images/s the
   card's bandwidth allows.
3. Copying the uint8 cache to the GPU: `carcolor.training.batches.to_device` (two reused pinned staging
   buffers, asynchronous copies) against the former way (a fresh pageable array per chunk), GB/s
   each, and the host's part of each alone.
4. Training throughput of MobileNetV2 and MobileNetV1 at 224 px, batch 256, eager and compiled,
   exactly as a grid cell trains: random images in a device cache, `CachedBatches` (crop, flip,
   normalise on the GPU) and `train_one_epoch` (bf16 autocast, channels_last, foreach Adam). The
   warm-up (`carcolor.training.loop.warm_up`: compilation and cuDNN autotuning) is timed apart, then a few
   untimed steps, then >= 200 timed steps measured by the training loop's own clock. Compilation
   starts from an empty Inductor cache (the cost of the first cell of each architecture).
5. A scaled paper grid through the real Snakefile: the 4 cells of experiments/paper.yaml's grid,
   one seed, 1 epoch each, on generated 224 px data, in results/gpu_check/grid/, with the Inductor
   cache of part 4 (so the cells load what part 4 compiled, as the later cells of a paper run do).
   From it, each cell's fixed cost F (process, kernel, imports, model, warm-up, cache copy, writing
   results: the cell's wall time minus its epochs), and the projected time of the full paper grid:

       T = seeds x (sum over cells [F + E x (N_train / R_train + N_eval / R_eval)]
                    + cells x (paper cache GB - grid cache GB) / copy GB/s)
           + sum over architectures (cold compile - warm compile)     (first run only)

   with R_train the compiled throughput of part 4, R_eval the grid's evaluation images/s and the
   copy rate of part 3.

The design's goal, MobileNetV2 >= 10,000 training images/s, was set for one H100; it is named as
such only on an H100. Other cards in the table get the goal scaled by memory bandwidth (training
MobileNetV2 at 224 px is bound by memory traffic, not arithmetic: part 2), said to be scaled; a
card not in the table gets no verdict. Without a GPU (and without --cpu-smoke) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runs from a checkout, installed or not

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from carcolor import atomic  # noqa: E402
from carcolor.training import optimizers as optim  # noqa: E402
from carcolor.training import models  # noqa: E402
from carcolor.training import loop, runtime  # noqa: E402
from carcolor.training.batches import CachedBatches, TrainPreset, to_device  # noqa: E402

GOAL_IMAGES_PER_S = 10_000  # MobileNetV2, 224 px, training, one H100 (DESIGN.md)
GOAL_GRID_S = 600  # the 4-cell paper grid, 10 epochs each, on one H100
GOAL_CARD = "H100"
REFERENCE_TB_S = 3.35  # H100 SXM (80 GB HBM3): the card the goal's bandwidth scaling refers to
N_CLASSES = 11
# Peak memory bandwidth in TB/s from NVIDIA's datasheets, matched against torch.cuda.get_device_name
# in this order (first match wins).
BANDWIDTH_TB_S = [
    (r"GH200", "GH200 (96 GB HBM3)", 4.0),
    (r"H200", "H200", 4.8),
    (r"H100.*NVL", "H100 NVL", 3.9),
    (r"H100.*PCIe", "H100 PCIe", 2.0),
    (r"H100", "H100 SXM", 3.35),
    (r"B200", "B200", 8.0),
    (r"A100.*80GB.*PCIe|A100.*PCIE.*80GB", "A100 80GB PCIe", 1.935),
    (r"A100.*80GB", "A100 80GB SXM", 2.039),
    (r"A100", "A100 40GB", 1.555),
    (r"L40S|L40\b", "L40S / L40", 0.864),
    (r"\bL4\b", "L4", 0.3),
    (r"\bA10G?\b", "A10 / A10G", 0.6),
    (r"V100", "V100", 0.9),
    (r"\bT4\b", "T4", 0.32),
    (r"RTX 4090", "GeForce RTX 4090", 1.008),
    (r"RTX 3090", "GeForce RTX 3090", 0.936),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 0.96),
    (r"RTX A6000", "RTX A6000", 0.768),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "results" / "gpu_check"), help="where the results go")
    p.add_argument("--archs", default="mobilenet_v2,mobilenet_v1", help="comma-separated architectures")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 224; smoke 32)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    p.add_argument("--images", type=int, default=20_000, help="random images in the device cache (3 GB)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps after the warm-up (default 10)")
    p.add_argument("--breakdown-steps", type=int, default=50,
                   help="steps timed with the per-phase breakdown on (default 50)")
    p.add_argument("--copy-gb", type=float, default=None, help="GB copied per copy method (default 4; smoke 0.05)")
    p.add_argument("--grid-train-per-colour", type=int, default=400,
                   help="training images per colour in the scaled grid (default 400: 4,400 images)")
    p.add_argument("--grid-eval-per-colour", type=int, default=50, help="val and test images per colour")
    p.add_argument("--parts", default="model,copy,throughput,grid",
                   help="which parts to run (default model,copy,throughput,grid; the projection needs "
                        "throughput and grid)")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="every part on the CPU at toy size (32 px, a few steps, a 4-colour grid); "
                        "'compiled' uses torch.compile's eager backend: the code path without Inductor")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.batch_size, args.images, args.steps, args.warmup = 8, 64, 3, 1
        args.breakdown_steps = 2
        args.grid_train_per_colour, args.grid_eval_per_colour = 12, 4
    if args.size is None:
        args.size = 32 if args.cpu_smoke else 224
    if args.copy_gb is None:
        args.copy_gb = 0.05 if args.cpu_smoke else 4.0
    args.parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(args.parts) - {"model", "copy", "throughput", "grid"})
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; valid: model, copy, throughput, grid")
    return args


# --------------------------------------------------------------------------- 1. the machine


def driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def card_bandwidth(name: str) -> tuple[str, float] | None:
    """(the table's name, TB/s) of the first entry matching the device name, or None."""
    for pattern, label, tb_s in BANDWIDTH_TB_S:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return label, tb_s
    return None


def machine(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    known = card_bandwidth(name) if cuda else None
    return {"device": name, "driver": driver_version() if cuda else None, "cuda": torch.version.cuda,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
            "memory_gb": torch.cuda.get_device_properties(device).total_memory / 1e9 if cuda else None,
            "bandwidth_card": known[0] if known else None, "bandwidth_tb_s": known[1] if known else None}


def memory_bound(arch: str, size: int, tb_s: float) -> dict:
    """Why the goal scales with memory bandwidth: arithmetic and memory traffic of one training image.

    Counted on the CPU at batch 1: the model's MACs and the values its layers output (a forward hook on
    every leaf module). A training step writes each output, reads it in the next layer, reads it again
    in the backward pass and writes and reads its gradient: 6 touches at the least, 8 with batch norm's
    extra passes (statistics, then normalisation; the same in the backward). In bf16 that bounds the
    images/s a card of `tb_s` TB/s can train, whatever its arithmetic."""
    model = models.build_model(arch, N_CLASSES).train()
    values = [0]

    def count(module, _inputs, output):
        if torch.is_tensor(output) and not any(True for _ in module.children()):
            values[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(2, 3, size, size))  # batch 2: batch norm needs more than one value in training
    for h in hooks:
        h.remove()
    per_image = values[0] / 2
    macs = models.count_macs(model, size)
    bytes_lo, bytes_hi = 6 * 2 * per_image, 8 * 2 * per_image
    return {"arch": arch, "size": size, "macs": macs, "train_gflop_per_image": 3 * 2 * macs / 1e9,
            "layer_output_values_per_image": per_image, "bf16_bytes_per_image_6_to_8_touches": [bytes_lo, bytes_hi],
            "tb_s": tb_s, "bandwidth_bound_images_per_s": [tb_s * 1e12 / bytes_hi, tb_s * 1e12 / bytes_lo]}


# --------------------------------------------------------------------------- 2. the cache copy


def pageable_to_device(images: np.ndarray, device: torch.device, chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """The former to_device: a fresh pageable array per chunk, copied synchronously (the baseline)."""
    out = torch.empty(tuple(images.shape), dtype=torch.uint8, device=device)
    step = max(1, chunk_bytes // max(1, images[0].nbytes))
    for i in range(0, len(images), step):
        out[i:i + step].copy_(torch.from_numpy(np.array(images[i:i + step], order="C")))
    return out


def _fresh_chunks(images: np.ndarray, _device, chunk_bytes: int = 1 << 28) -> None:
    step = max(1, chunk_bytes // images[0].nbytes)
    for i in range(0, len(images), step):
        np.array(images[i:i + step], order="C")


def _reused_chunks(images: np.ndarray, _device, chunk_bytes: int = 1 << 28) -> None:
    step = max(1, chunk_bytes // images[0].nbytes)
    buf = np.empty((step,) + images.shape[1:], dtype=np.uint8)
    for i in range(0, len(images), step):
        chunk = images[i:i + step]
        np.copyto(buf[:len(chunk)], chunk)


def measure_copy(device: torch.device, size: int, gigabytes: float, rounds: int = 3) -> dict:
    """GB/s of both ways of copying a host uint8 array to the device, alternated, best of `rounds`."""
    n = max(2, int(gigabytes * 1e9 // (size * size * 3)))
    host = np.full((n, size, size, 3), 7, dtype=np.uint8)  # the bytes' values do not change a copy's speed
    ways = {"pinned staging (to_device)": to_device, "pageable chunks (former)": pageable_to_device,
            # the host-side part of each, alone: what the host does per chunk before the bus
            "host only: a fresh array per chunk": _fresh_chunks, "host only: one reused buffer": _reused_chunks}
    seconds = {name: [] for name in ways}
    for _ in range(rounds):
        for name, copy in ways.items():
            loop.sync(device)
            t = time.perf_counter()
            out = copy(host, device)
            loop.sync(device)
            seconds[name].append(time.perf_counter() - t)
            del out
    best = {name: min(s) for name, s in seconds.items()}
    gb = host.nbytes / 1e9
    return {"gigabytes": gb, "rounds": rounds, "seconds": seconds,
            **{f"{name} GB/s": gb / s for name, s in best.items()},
            "paper cache 18.2 GB, seconds": {name: 18.2 / (gb / s) for name, s in best.items()}}


# --------------------------------------------------------------------------- 3. throughput


def stream(batches):
    while True:
        yield from batches


def measure(arch: str, mode: str, images: torch.Tensor, labels: torch.Tensor, args, device: torch.device,
            amp: torch.dtype | None) -> dict:
    """Warm-up as a cell does it (timed apart), untimed steps, then timed steps by the loop's own clock."""
    torch.manual_seed(0)
    compiled = mode == "compiled"
    rt = runtime.Runtime(device=device, amp_dtype=amp, compile=compiled, data_on_device=device.type == "cuda",
                         channels_last=True)
    model = models.build_model(arch, N_CLASSES).to(device, memory_format=torch.channels_last)
    kwargs, impl = optim.optimizer_settings("adam", {})
    optimizer = optim.build_optimizer("adam", model.parameters(), lr=1e-3, **kwargs)
    criterion = torch.nn.CrossEntropyLoss()
    batches = CachedBatches(images, labels, batch_size=args.batch_size, device=device, shuffle=True, seed=0,
                            preset=TrainPreset(crop_padding=max(1, args.size // 14), hflip=True),
                            on_device=True, drop_last=True, dtype=rt.input_dtype)
    step_model = model
    if compiled:
        step_model = torch.compile(model, **({"backend": "eager"} if device.type == "cpu" else {}))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warm_up_s = loop.warm_up(model, step_model, criterion, rt, batch_size=args.batch_size, image_size=args.size)
    source = stream(batches)

    def steps(n: int, timing: bool) -> dict:
        return loop.train_one_epoch(step_model, criterion, optimizer, itertools.islice(source, n), rt,
                                       n_classes=N_CLASSES, timing=timing)

    first = steps(args.warmup, False)
    plain = steps(args.steps, False)
    timed = steps(args.breakdown_steps, True)
    split = sum(timed[k] for k in loop.PHASES) or float("nan")
    row = {"arch": arch, "mode": mode, "warm_up_s": warm_up_s, "untimed_steps_s": first["seconds"],
           "timed_steps": args.steps, "images_per_s": plain["images_per_s"],
           "ms_per_step": 1000 * plain["seconds"] / args.steps,
           "images_per_s_breakdown_on": timed["images_per_s"], "optimizer_impl": impl,
           **{f"{k[:-2]}_share": timed[k] / split for k in loop.PHASES},
           "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None}
    del step_model, model, optimizer, batches, source
    if compiled:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


# --------------------------------------------------------------------------- 4. the scaled paper grid


def grid_config(args) -> dict:
    """paper.yaml's grid and training settings, one seed, 1 epoch, on generated data of the paper's size."""
    paper = yaml.safe_load((REPO / "experiments" / "paper.yaml").read_text())
    n_train, n_eval = args.grid_train_per_colour, args.grid_eval_per_colour
    colours = paper["data"]["colours"][:4] if args.cpu_smoke else paper["data"]["colours"]
    train = {**paper["train"], "epochs": 1}
    if args.cpu_smoke:
        train.update(batch_size=8, eval_batch_size=32, crop_padding=2)
    photos = 4
    adverts = -(-int(1.3 * (n_train + 2 * n_eval)) // photos) + 4  # the advert-level split needs slack
    return {"data": {"source": "synthetic", "colours": colours, "n_train_per_colour": n_train,
                     "n_val_per_colour": n_eval, "n_test_per_colour": n_eval,
                     "image_size": args.size, "seed": 0},
            "synthetic": {"adverts_per_colour": adverts, "photos_per_advert": photos, "seed": 0},
            "grid": {**paper["grid"], "seeds": [0]}, "train": train}


def run_grid(args, out: Path, cache_dir: Path) -> dict:
    """The scaled grid through the real Snakefile, from scratch (the generated data are kept)."""
    workdir = out / "grid"
    shutil.rmtree(workdir / "results", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    config = grid_config(args)
    atomic.write_text(workdir / "gpu_check.yaml", yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "gpu_check.yaml"), "--cores", "all"]
    if not args.cpu_smoke:
        cmd += ["--resources", "gpu=1"]  # one cell at a time on the one GPU, as the workflow profile says
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    print(f"\n[grid] {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    atomic.write_text(out / "grid.log", done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"gpu_check: the scaled grid failed (snakemake exit {done.returncode}); "
                         f"its output is in {out / 'grid.log'}:\n{done.stderr[-3000:]}")
    cells = []
    for cell in sorted(p.name for p in (workdir / "results" / "runs").iterdir()):
        run = workdir / "results" / "runs" / cell
        summary = json.loads((run / "summary.json").read_text())
        metrics = pd.read_csv(run / "metrics.csv")
        log = (workdir / "results" / "logs" / "train_cell" / f"{cell}.log").read_text()
        found = re.search(r"carcolor: cell \S+ done in ([0-9.]+)s", log)
        wall_s = float(found.group(1)) if found else float("nan")
        train_rows, eval_rows = metrics[metrics["split"] == "train"], metrics[metrics["split"] != "train"]
        epochs_s = float(metrics["seconds"].sum())
        cells.append({"cell": cell, "arch": summary["arch"], "wall_s": wall_s, "epochs_s": epochs_s,
                      "fixed_s": wall_s - epochs_s, "warm_up_s": summary["warm_up_s"],
                      "train_images_per_s": float(train_rows["images_per_s"].mean()),
                      "eval_images_per_s": float(len(train_rows) * (summary["val_images"] + summary["test_images"])
                                                 / eval_rows["seconds"].sum()),
                      "data_on_device": summary["data_on_device"],
                      "warm_up_peak_gb": (summary.get("warm_up_peak_bytes") or 0) / 1e9 or None})
    return {"workdir": str(workdir), "command": " ".join(cmd), "wall_s": wall, "config": config, "cells": cells}


def _rate(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def project(grid: dict, rows: list[dict], copy: dict | None = None) -> dict:
    """The full paper grid's time from the scaled grid's fixed costs and the measured rates; with the
    copy measured, each cell's fixed cost also grows by copying the paper's larger cache to the GPU."""
    paper = yaml.safe_load((REPO / "experiments" / "paper.yaml").read_text())
    n_colours = len(paper["data"]["colours"])
    n_train = n_colours * paper["data"]["n_train_per_colour"]
    n_eval = n_colours * (paper["data"]["n_val_per_colour"] + paper["data"]["n_test_per_colour"])
    epochs, seeds = paper["train"]["epochs"], len(paper["grid"]["seeds"])
    compiled = {r["arch"]: r for r in rows if r["mode"] == "compiled"} or {r["arch"]: r for r in rows}
    terms, total = [], 0.0
    for c in grid["cells"]:
        r_train = compiled[c["arch"]]["images_per_s"]
        seconds = c["fixed_s"] + epochs * (n_train / r_train + n_eval / c["eval_images_per_s"])
        terms.append({"cell": c["cell"], "F_s": c["fixed_s"], "R_train": r_train, "R_eval": c["eval_images_per_s"],
                      "seconds": seconds})
        total += seconds
    copy_extra = 0.0
    if copy and grid.get("config"):
        d = grid["config"]["data"]
        grid_gb = len(d["colours"]) * (d["n_train_per_colour"] + d["n_val_per_colour"] + d["n_test_per_colour"]) \
            * 3 * d["image_size"] ** 2 / 1e9
        paper_gb = (n_train + n_eval) * 3 * paper["data"]["image_size"] ** 2 / 1e9
        per_cell = max(0.0, paper_gb - grid_gb) / copy["pinned staging (to_device) GB/s"]
        copy_extra = per_cell * sum(1 for c in grid["cells"] if c["data_on_device"])
        total += copy_extra
    total *= seeds
    cold_extra = sum(max(0.0, compiled[a]["warm_up_s"] - min(c["warm_up_s"] for c in grid["cells"] if c["arch"] == a))
                     for a in {c["arch"] for c in grid["cells"]} if a in compiled)
    sums = " + ".join(f"[{t['F_s']:.1f} + {epochs} x ({n_train} / {_rate(t['R_train'])} + {n_eval} / "
                      f"{_rate(t['R_eval'])})]" for t in terms)
    copy_term = f" + {copy_extra:.1f}" if copy_extra else ""
    formula = (f"T = seeds x (sum over the {len(terms)} cells of [F + E x (N_train / R_train + N_eval / R_eval)]"
               f"{' + the larger cache copies' if copy_extra else ''}) = {seeds} x ({sums}{copy_term}) "
               f"= {total:.0f} s; first run (empty compile cache): + {cold_extra:.0f} s = {total + cold_extra:.0f} s")
    return {"N_train": n_train, "N_eval": n_eval, "epochs": epochs, "seeds": seeds, "cells": terms,
            "cache_copy_extra_s": copy_extra, "warm_cache_s": total, "cold_compile_extra_s": cold_extra,
            "first_run_s": total + cold_extra, "formula": formula}


# --------------------------------------------------------------------------- verdicts and report


def verdicts(env: dict, rows: list[dict], projection: dict | None, smoke: bool) -> list[str]:
    v2 = [r["images_per_s"] for r in rows if r["arch"] == "mobilenet_v2"]
    if smoke:
        return ["CPU smoke run: toy sizes, no verdict."]
    if not v2:
        return ["MobileNetV2 not measured: no verdict."]
    best, name, lines = max(v2), env["device"], []
    if GOAL_CARD in name.upper():
        lines.append(f"MobileNetV2 {best:,.0f} training images/s: {'meets' if best >= GOAL_IMAGES_PER_S else 'misses'} "
                     f"the goal of {GOAL_IMAGES_PER_S:,} images/s, set for this card ({GOAL_CARD}).")
        if projection:
            t = projection["first_run_s"]
            lines.append(f"Projected paper grid {t / 60:.1f} min (first run, empty compile cache): "
                         f"{'meets' if t <= GOAL_GRID_S else 'misses'} the goal of {GOAL_GRID_S / 60:.0f} min.")
    elif env["bandwidth_tb_s"]:
        scaled = GOAL_IMAGES_PER_S * env["bandwidth_tb_s"] / REFERENCE_TB_S
        lines.append(f"MobileNetV2 {best:,.0f} training images/s. The goal of {GOAL_IMAGES_PER_S:,} images/s was set "
                     f"for an {GOAL_CARD} (SXM, {REFERENCE_TB_S} TB/s); scaled by memory bandwidth to this card "
                     f"({env['bandwidth_card']}, {env['bandwidth_tb_s']} TB/s) it is {scaled:,.0f} images/s, which "
                     f"this run {'meets' if best >= scaled else 'misses'} (a scaled equivalent, not the goal itself). "
                     f"The 10-minute grid goal is for an {GOAL_CARD}: no verdict here.")
    else:
        lines.append(f"MobileNetV2 {best:,.0f} training images/s. No verdict: the goal was set for an {GOAL_CARD}, "
                     f"and '{name}' is not in the table of memory bandwidths used to scale it to other cards.")
    return lines


def markdown(result: dict) -> str:
    env = result["machine"]
    lines = ["# GPU check", "", f"`{result['command']}`, {result['total_s']:.0f} s in all.", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    if result["memory_bound"]:
        lines += ["", "## Memory traffic per training image (bf16; see benchmarks/README.md)", "",
                  "| arch | M MACs | GFLOP to train | M layer-output values | MB moved (6-8 touches) | "
                  "bandwidth-bound images/s |", "|---|---|---|---|---|---|"]
        for b in result["memory_bound"]:
            lo, hi = b["bf16_bytes_per_image_6_to_8_touches"]
            r_lo, r_hi = b["bandwidth_bound_images_per_s"]
            lines.append(f"| {b['arch']} | {b['macs'] / 1e6:.0f} | {b['train_gflop_per_image']:.1f} | "
                         f"{b['layer_output_values_per_image'] / 1e6:.1f} | {lo / 1e6:.0f}-{hi / 1e6:.0f} | "
                         f"{r_lo:,.0f}-{r_hi:,.0f} at {b['tb_s']} TB/s |")
    copy = result["copy"] or {"gigabytes": 0, "rounds": 0, "paper cache 18.2 GB, seconds": {}}
    lines += ["", f"## Copying {copy['gigabytes']:.2f} GB to the device (best of {copy['rounds']})", "",
              "| method | GB/s | paper cache 18.2 GB, s |", "|---|---|---|"]
    for name, s in copy["paper cache 18.2 GB, seconds"].items():
        lines.append(f"| {name} | {copy[f'{name} GB/s']:.2f} | {s:.1f} |")
    lines += ["", f"## Training throughput, {result['size']} px, batch {result['batch_size']}", "",
              "| arch | mode | images/s | ms/step | warm-up s | timed steps | data % | fwd+bwd % | opt % | peak GB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["throughput"] or []:
        peak = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] else "-"
        lines.append(f"| {r['arch']} | {r['mode']} | {r['images_per_s']:,.0f} | {r['ms_per_step']:.1f} | "
                     f"{r['warm_up_s']:.1f} | {r['timed_steps']} | {100 * r['data_share']:.0f} | "
                     f"{100 * r['forward_backward_share']:.0f} | {100 * r['optimizer_share']:.0f} | {peak} |")
    if result["grid"]:
        g = result["grid"]
        lines += ["", f"## Scaled paper grid ({g['wall_s']:.0f} s through the Snakefile)", "",
                  f"`{g['command']}`", "",
                  "| cell | wall s | epochs s | fixed s | warm-up s | train img/s | eval img/s | data on device |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in g["cells"]:
            lines.append(f"| {c['cell']} | {c['wall_s']:.1f} | {c['epochs_s']:.1f} | {c['fixed_s']:.1f} | "
                         f"{c['warm_up_s']:.1f} | {c['train_images_per_s']:,.0f} | {c['eval_images_per_s']:,.0f} | "
                         f"{c['data_on_device']} |")
    if result["projection"]:
        p = result["projection"]
        lines += ["", "## Projected paper grid", "",
                  f"N_train = {p['N_train']:,}, N_eval = {p['N_eval']:,} (val + test), E = {p['epochs']} epochs, "
                  f"{len(p['cells'])} cells x {p['seeds']} seed(s); F = a cell's fixed cost (its wall time minus "
                  f"its epochs, warm compile cache), R_train = compiled training images/s above, R_eval = the "
                  f"grid's evaluation images/s.", "", f"`{p['formula']}`"]
    lines += ["", "## Verdict", ""] + [f"- {line}" for line in result["verdicts"]]
    return "\n".join(lines) + "\n"


def throughput(args, device: torch.device, amp) -> list[dict]:
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (args.images, args.size, args.size, 3), dtype=torch.uint8, device=device,
                           generator=gen)
    labels = torch.randint(0, N_CLASSES, (args.images,), device=device, generator=gen)
    print(f"\n[throughput] {args.images} random {args.size} px images on the device ({images.numel() / 1e9:.2f} GB), "
          f"batch {args.batch_size}, warm-up + {args.warmup} untimed + {args.steps} timed steps "
          f"(+ {args.breakdown_steps} with the breakdown on)", flush=True)
    rows = []
    for arch in [a for a in args.archs.split(",") if a]:
        for mode in ("eager", "compiled"):
            rows.append(measure(arch, mode, images, labels, args, device, amp))
            r = rows[-1]
            print(f"  {arch:14s} {mode:9s} {r['images_per_s']:9,.0f} images/s  {r['ms_per_step']:7.1f} ms/step  "
                  f"warm-up {r['warm_up_s']:.1f}s", flush=True)
    del images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.cpu_smoke:
        device, amp = torch.device("cpu"), None
    elif not torch.cuda.is_available():
        print(f"No CUDA GPU found (torch {torch.__version__}, built for CUDA {torch.version.cuda}): nothing to "
              f"measure. `--cpu-smoke` runs every part on the CPU at toy size.")
        return 0
    else:
        device, amp = torch.device("cuda"), torch.bfloat16
        torch.backends.cudnn.benchmark = True  # as a grid cell on CUDA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # an empty Inductor cache: part 4 compiles cold, as the first cell of an architecture in a new run
    cache_dir = (out / "inductor-cache").resolve()
    shutil.rmtree(cache_dir, ignore_errors=True)
    os.environ.update(TORCHINDUCTOR_CACHE_DIR=str(cache_dir), TORCHINDUCTOR_FX_GRAPH_CACHE="1",
                      TORCHINDUCTOR_AUTOGRAD_CACHE="1")
    env = machine(device)
    print("\n".join(f"{k:15s} {v}" for k, v in env.items()), flush=True)

    copy = rows = grid = projection = None
    bounds = []
    if "model" in args.parts:
        tb_s = env["bandwidth_tb_s"] or REFERENCE_TB_S
        print(f"\n[model] memory traffic of one training image at {args.size} px, bf16, against "
              f"{tb_s} TB/s ({env['bandwidth_card'] or 'H100 SXM'}):", flush=True)
        for arch in [a for a in args.archs.split(",") if a]:
            b = memory_bound(arch, args.size, tb_s)
            bounds.append(b)
            lo, hi = b["bandwidth_bound_images_per_s"]
            print(f"  {arch:14s} {b['macs'] / 1e6:5.0f} M MACs ({b['train_gflop_per_image']:.1f} GFLOP to train), "
                  f"{b['layer_output_values_per_image'] / 1e6:.1f} M layer-output values: "
                  f"{b['bf16_bytes_per_image_6_to_8_touches'][0] / 1e6:.0f}-"
                  f"{b['bf16_bytes_per_image_6_to_8_touches'][1] / 1e6:.0f} MB moved, at most {lo:,.0f}-{hi:,.0f} "
                  f"images/s", flush=True)
    if "copy" in args.parts:
        copy = measure_copy(device, args.size, args.copy_gb)
        print(f"\n[copy] {copy['gigabytes']:.2f} GB host -> {device.type}, best of {copy['rounds']}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in copy.items() if k.endswith("GB/s")), flush=True)
    if "throughput" in args.parts:
        rows = throughput(args, device, amp)
    if "grid" in args.parts:
        grid = run_grid(args, out, cache_dir)
        for c in grid["cells"]:
            print(f"  {c['cell']:24s} wall {c['wall_s']:6.1f}s  epochs {c['epochs_s']:6.1f}s  "
                  f"fixed {c['fixed_s']:6.1f}s  warm-up {c['warm_up_s']:5.1f}s", flush=True)
        if rows:
            projection = project(grid, rows, copy)
            print(f"\n[projection] {projection['formula']}", flush=True)
    command = " ".join(["python benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "machine": env, "memory_bound": bounds, "size": args.size,
              "batch_size": args.batch_size, "copy": copy, "throughput": rows, "grid": grid, "projection": projection,
              "verdicts": verdicts(env, rows or [], projection, args.cpu_smoke)}
    result["total_s"] = time.perf_counter() - t0
    print("\n" + "\n".join(result["verdicts"]))
    atomic.write_json(out / "gpu_check.json", result, default=str)
    atomic.write_text(out / "gpu_check.md", markdown(result))
    print(f"\nwritten: {out / 'gpu_check.json'}, {out / 'gpu_check.md'} ({result['total_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
