"""Training throughput on a GPU: MobileNetV2 and MobileNetV1 at 224 px, data pipeline included.

    python benchmarks/gpu_check.py                # on a CUDA machine, a few minutes at most
    python benchmarks/gpu_check.py --no-compile   # eager only, well under a minute
    python benchmarks/gpu_check.py --cpu-smoke    # the same code path on the CPU, tiny, in seconds

Self-contained: it needs this checkout and the package's dependencies, no data set. It makes a
uint8 cache of random images directly on the GPU (20,000 x 224 x 224 x 3 by default, 3 GB) and
trains on it exactly as a grid cell does: carcolor.batches.CachedBatches with the whole set on the
device (batch crop/flip/normalise on the GPU), carcolor.train.train_one_epoch with bf16 autocast,
channels_last and the foreach optimizer, eager and under torch.compile. Random pixels cost the
same as photos. Without a GPU it says so and exits 0.

Per (architecture, mode) it reports the warm-up (compilation included), training images/s with
the timing breakdown off (as a run's throughput) and on (CUDA events: should cost next to nothing),
and where the time went. The design target: MobileNetV2 >= 10,000 images/s on one H100.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runs from a checkout, installed or not

import torch  # noqa: E402

from carcolor import models, optim  # noqa: E402
from carcolor import train as cctrain  # noqa: E402
from carcolor.batches import CachedBatches, TrainPreset  # noqa: E402

TARGET_V2 = 10_000  # images/s, MobileNetV2 at 224 px on one H100 (DESIGN.md)
N_CLASSES = 11


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="mobilenet_v2,mobilenet_v1", help="comma-separated architectures")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    p.add_argument("--images", type=int, default=20_000, help="random images in the on-device cache")
    p.add_argument("--steps", type=int, default=60, help="timed steps per measurement (default 60)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first, compilation included")
    p.add_argument("--optimizer", default="adam", help="optimizer (default adam)")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (default: torch's default; e.g. max-autotune-no-cudagraphs)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="run the measuring code on the CPU at toy size (32 px, 3 steps); 'compiled' then "
                        "uses torch.compile's eager backend, which checks the code path without inductor")
    return p.parse_args(argv)


def stream(batches):
    while True:
        yield from batches


def measure(arch: str, mode: str, images: torch.Tensor, labels: torch.Tensor, args, device: torch.device,
            amp: torch.dtype | None) -> dict:
    """Warm up, then time `steps` training steps with the timing breakdown off, then on."""
    torch.manual_seed(0)
    compiled = mode == "compiled"
    rt = cctrain.Runtime(device=device, amp_dtype=amp, compile=compiled, data_on_device=device.type == "cuda",
                         channels_last=True)
    model = models.build_model(arch, N_CLASSES).to(device, memory_format=torch.channels_last)
    kwargs, impl = cctrain.optimizer_settings(args.optimizer, {})
    optimizer = optim.build_optimizer(args.optimizer, model.parameters(), lr=1e-3, **kwargs)
    criterion = torch.nn.CrossEntropyLoss()
    batches = CachedBatches(images, labels, batch_size=args.batch_size, device=device, shuffle=True, seed=0,
                            preset=TrainPreset(crop_padding=4, hflip=True), on_device=True, drop_last=True,
                            dtype=rt.input_dtype)
    step_model = model
    if compiled:
        options = {"backend": "eager"} if device.type == "cpu" else {"mode": args.compile_mode}
        step_model = torch.compile(model, **options)
    source = stream(batches)

    def steps(n: int, timing: bool) -> dict:
        return cctrain.train_one_epoch(step_model, criterion, optimizer, itertools.islice(source, n), rt,
                                       n_classes=N_CLASSES, timing=timing)

    t = time.perf_counter()
    steps(args.warmup, False)
    warmup_s = time.perf_counter() - t
    plain = steps(args.steps, False)
    timed = steps(args.steps, True)
    split = sum(timed[k] for k in cctrain.PHASES)
    row = {"arch": arch, "mode": mode, "warmup_s": warmup_s, "images_per_s": plain["images_per_s"],
           "ms_per_step": 1000 * plain["seconds"] / args.steps,
           "images_per_s_breakdown_on": timed["images_per_s"], "optimizer_impl": impl,
           **{k: timed[k] for k in cctrain.PHASES}, "breakdown_sum_s": split, "breakdown_seconds": timed["seconds"]}
    del step_model, model, optimizer, batches, source
    if compiled:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        args.size, args.batch_size, args.images, args.steps, args.warmup = 32, 8, 64, 3, 1
        device, amp, name = torch.device("cpu"), None, f"CPU smoke test ({torch.get_num_threads()} threads)"
    elif not torch.cuda.is_available():
        print(f"No CUDA GPU found (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
              f"nothing to measure. `--cpu-smoke` runs the measuring code on the CPU at toy size.")
        return 0
    else:
        device, amp, name = torch.device("cuda"), torch.bfloat16, torch.cuda.get_device_name()
        torch.backends.cudnn.benchmark = True
    archs = [a for a in args.archs.split(",") if a]
    modes = ["eager"] + ([] if args.no_compile else ["compiled"])
    t0 = time.perf_counter()
    # the cache, made on the device: uint8 NHWC, as carcolor.prepare writes it
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (args.images, args.size, args.size, 3), dtype=torch.uint8, device=device,
                           generator=gen)
    labels = torch.randint(0, N_CLASSES, (args.images,), device=device, generator=gen)
    print(f"{name}: torch {torch.__version__} (CUDA {torch.version.cuda}), {args.images} random images of "
          f"{args.size} px on the device ({images.numel() / 1e9:.2f} GB), batch {args.batch_size}, "
          f"{args.warmup} warm-up + 2 x {args.steps} timed steps; {'bf16 autocast' if amp else 'fp32'}, "
          f"channels_last, batch augmentation on the device", flush=True)
    rows = []
    for arch in archs:
        for mode in modes:
            row = measure(arch, mode, images, labels, args, device, amp)
            rows.append(row)
            print(f"  {arch:14s} {mode:9s} {row['images_per_s']:9.0f} images/s  ({row['ms_per_step']:.1f} ms/step,"
                  f" warm-up {row['warmup_s']:.1f}s)", flush=True)
    header = (f"{'arch':14s} {'mode':9s} {'images/s':>9s} {'ms/step':>8s} {'warm-up s':>9s} "
              f"{'img/s (breakdown on)':>20s} {'data %':>6s} {'fwd+bwd %':>9s} {'opt %':>6s}")
    print(f"\n{name} - training at {args.size} px, batch {args.batch_size}, optimizer {args.optimizer} "
          f"({rows[0]['optimizer_impl'] if rows else '-'})")
    print(header)
    print("-" * len(header))
    for r in rows:
        total = r["breakdown_sum_s"] or float("nan")
        print(f"{r['arch']:14s} {r['mode']:9s} {r['images_per_s']:9.0f} {r['ms_per_step']:8.1f} {r['warmup_s']:9.1f} "
              f"{r['images_per_s_breakdown_on']:20.0f} {100 * r['data_s'] / total:6.1f} "
              f"{100 * r['forward_backward_s'] / total:9.1f} {100 * r['optimizer_s'] / total:6.1f}")
    v2 = [r["images_per_s"] for r in rows if r["arch"] == "mobilenet_v2"]
    if v2 and not args.cpu_smoke and args.size == 224:
        best = max(v2)
        verdict = "meets" if best >= TARGET_V2 else "misses"
        print(f"\nMobileNetV2 best {best:,.0f} images/s: {verdict} the {TARGET_V2:,} images/s target (one H100).")
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "size": args.size,
                                               "batch_size": args.batch_size, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
