"""Which training-step options pay on the CPU: channels_last, bf16 autocast, torch.compile, allocator.

    python benchmarks/cpu_options.py                      # 64 px: memory format x autocast, both models
    python benchmarks/cpu_options.py --size 224 --reps 3  # the same at 224 px (about 5 minutes on 2 cores)
    python benchmarks/cpu_options.py --compile            # + compile time and compiled step speed
    python benchmarks/cpu_options.py --allocator          # glibc keeping freed memory or not (two processes)

Times carcolor's train step alone (random tensors, no input pipeline) for batch 64 with Adam
(foreach), each variant in turn, round after round, and prints the median and best images/s per
variant. The numbers behind the CPU defaults are in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from carcolor.training import models  # noqa: E402
from carcolor.training import runtime  # noqa: E402
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--archs", default="mobilenet_v2,mobilenet_v1")
    p.add_argument("--reps", type=int, default=5, help="rounds over all variants (default 5)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant and round")
    p.add_argument("--no-amp", action="store_true", help="fp32 only (skip bf16 autocast)")
    p.add_argument("--compile", action="store_true", help="measure torch.compile (inductor) instead")
    p.add_argument("--allocator", action="store_true", help="compare glibc keeping freed memory or not")
    p.add_argument("--no-keep-memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.steps = args.steps or (8 if args.size <= 96 else 3)
    return args


def make(arch: str, channels_last: bool, size: int, batch: int):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = models.build_model(arch, 11).to(memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 11, (batch,))
    return model, optimizer, x, y


def step(model, optimizer, x, y, amp: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


FAULTS: dict[str, list[tuple[float, float]]] = {}  # per variant: (page faults, system seconds) per step


def timed(fn, steps: int, batch: int, key: str = "") -> float:
    """Images/s over `steps` calls after one untimed call; page faults and kernel time go to FAULTS."""
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    rate = steps * batch / (time.perf_counter() - t)
    after = resource.getrusage(resource.RUSAGE_SELF)
    FAULTS.setdefault(key, []).append(((after.ru_minflt - before.ru_minflt) / steps,
                                       (after.ru_stime - before.ru_stime) / steps))
    return rate


def report(rates: dict) -> dict:
    out = {}
    for key, values in rates.items():
        out[key] = {"median": statistics.median(values), "best": max(values), "all": values}
        print(f"  {key:40s} median {out[key]['median']:7.1f}  best {out[key]['best']:7.1f} images/s  "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    return out


def formats_and_amp(args) -> dict:
    variants = list(itertools.product(args.archs.split(","), (True, False), (False,) if args.no_amp else (False, True)))
    built = {v: make(v[0], v[1], args.size, args.batch_size) for v in variants}
    rates: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for (arch, cl, amp), (model, opt, x, y) in built.items():
            key = f"{arch} {'channels_last' if cl else 'contiguous'} {'bf16-autocast' if amp else 'fp32'}"
            rates.setdefault(key, []).append(
                timed(lambda: step(model, opt, x, y, amp), args.steps, args.batch_size, key))
    result = report(rates)
    print("  page faults and kernel (system) seconds per step, medians:")
    for key, values in FAULTS.items():
        faults = statistics.median(v[0] for v in values)
        system = statistics.median(v[1] for v in values)
        result[key].update(faults_per_step=faults, system_s_per_step=system)
        print(f"  {key:40s} {faults:10.0f} faults  {system:6.2f} s")
    return result


def compiled(args) -> dict:
    rates: dict[str, list[float]] = {}
    for arch in args.archs.split(","):
        model, opt, x, y = make(arch, True, args.size, args.batch_size)
        fast = torch.compile(model)
        step(model, opt, x, y, False)
        t = time.perf_counter()
        step(fast, opt, x, y, False)
        first = time.perf_counter() - t
        print(f"  {arch}: first compiled step (compilation) {first:.1f}s", flush=True)
        rates[f"{arch} compile seconds"] = [first]
        for _ in range(args.reps):
            for name, m in (("eager", model), ("compiled", fast)):
                rates.setdefault(f"{arch} {name}", []).append(
                    timed(lambda: step(m, opt, x, y, False), args.steps, args.batch_size))
    return report({k: v for k, v in rates.items() if not k.endswith("seconds")}) | {
        k: v for k, v in rates.items() if k.endswith("seconds")}


def allocator(args) -> dict:
    out: dict[str, list[float]] = {}
    faults: dict[str, list[tuple[float, float]]] = {}
    base = [sys.executable, __file__, "--size", str(args.size), "--batch-size", str(args.batch_size),
            "--archs", args.archs, "--reps", "1", "--steps", str(args.steps), "--no-amp"]
    for r in range(args.reps):
        for keep in (True, False):
            cmd = base + ([] if keep else ["--no-keep-memory"])
            done = subprocess.run(cmd + ["--json", "-"], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout[done.stdout.index("{"):])
            for key, value in result.items():
                if "channels_last fp32" in key:
                    name = f"{key.split()[0]} {'keeps freed memory' if keep else 'glibc default'}"
                    out.setdefault(name, []).append(value["median"])
                    faults.setdefault(name, []).append((value["faults_per_step"], value["system_s_per_step"]))
    result = report(out)
    print("  page faults and kernel (system) seconds per step, medians:")
    for name, values in faults.items():
        print(f"  {name:40s} {statistics.median(v[0] for v in values):10.0f} faults  "
              f"{statistics.median(v[1] for v in values):6.2f} s")
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    keeps = False if args.no_keep_memory else runtime.keep_freed_memory()
    print(f"{args.size} px, batch {args.batch_size}, {args.reps} rounds x {args.steps} steps; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{torch.backends.cpu.get_cpu_capability()}; glibc keeps freed memory: {keeps}", flush=True)
    if args.allocator:
        result = allocator(args)
    elif args.compile:
        result = compiled(args)
    else:
        result = formats_and_amp(args)
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
