"""torch.compile with a cold and a warm Inductor cache: two fresh processes, one cache folder.

    python benchmarks/compile_cache.py                          # MobileNetV2, 32 px, batch 8, CPU
    python benchmarks/compile_cache.py --device cuda --size 224 --batch-size 256

Each grid cell is its own process (papermill starts one kernel per cell), so nothing compiled in
one cell survives in memory for the next. What does survive is Inductor's on-disk caches, which
`carcolor train-cell` points at one folder per working directory (see carcolor.training.notebook): the FX
graph cache (compiled code) and the AOT autograd cache (the joint forward/backward graph). This
script runs the same compiled training steps in two fresh processes that share one new, empty cache
folder and prints, for each, the first step's seconds (compilation included), the cache hits and
misses, and a checksum of the losses and weights after the steps: the warm process must produce
the same bits as the cold one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="compiled training steps per process (default 3)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache-dir", default=None, help="the shared cache folder (default: a new temporary one)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args) -> dict:
    """One fresh process: compile, train `steps` steps, report times, cache counters and a checksum."""
    t_import = time.perf_counter()
    import torch
    from torch._dynamo.utils import counters

    from carcolor.training import models
    from carcolor.training import optimizers
    if args.threads:
        torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t_import
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = models.build_model(args.arch, 11).to(device, memory_format=torch.channels_last)
    kwargs, _ = optimizers.optimizer_settings("adam", {})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **kwargs)
    step_model = torch.compile(model)
    amp = torch.bfloat16 if device.type == "cuda" else None
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (args.batch_size,), generator=gen).to(device)
    losses, seconds = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
        losses.append(loss.item())
    digest = hashlib.sha256()
    for v in model.state_dict().values():
        digest.update(v.detach().float().cpu().numpy().tobytes())
    digest.update(json.dumps(losses).encode())
    return {"import_s": import_s, "first_step_s": seconds[0], "later_step_s": seconds[1:], "losses": losses,
            "checksum": digest.hexdigest()[:16],
            "fxgraph_cache": {k: counters["inductor"][k] for k in ("fxgraph_cache_hit", "fxgraph_cache_miss")},
            "autograd_cache": {k: counters["aot_autograd"][k] for k in ("autograd_cache_hit", "autograd_cache_miss")}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return {}
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="carcolor-inductor-"))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache.resolve()), TORCHINDUCTOR_FX_GRAPH_CACHE="1",
               TORCHINDUCTOR_AUTOGRAD_CACHE="1")
    cmd = [sys.executable, __file__, "--child", "--arch", args.arch, "--size", str(args.size),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    runs = {}
    for name in ("cold", "warm"):
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"the {name} process failed:\n{out.stderr[-3000:]}")
        runs[name] = {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - t}
        r = runs[name]
        print(f"{name}: first compiled step {r['first_step_s']:.1f}s (process {r['process_s']:.1f}s), "
              f"FX graph cache {r['fxgraph_cache']}, AOT autograd cache {r['autograd_cache']}, "
              f"checksum {r['checksum']}", flush=True)
    same = runs["cold"]["checksum"] == runs["warm"]["checksum"]
    print(f"{args.arch}, {args.size} px, batch {args.batch_size}, {args.device}: first step "
          f"{runs['cold']['first_step_s']:.1f}s cold, {runs['warm']['first_step_s']:.1f}s warm "
          f"({runs['cold']['first_step_s'] / runs['warm']['first_step_s']:.1f}x); losses and weights "
          f"{'identical' if same else 'DIFFERENT'} cold and warm; cache {cache}")
    result = {"arch": args.arch, "size": args.size, "batch_size": args.batch_size, "device": args.device,
              "cache_dir": str(cache), "identical": same, **runs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
