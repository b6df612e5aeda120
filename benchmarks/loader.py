"""Our training loop against a plain torchvision ImageFolder + PIL + DataLoader loop, side by side.

    python benchmarks/loader.py                 # 64 px, MobileNetV2, batch 64 (the default config's)
    python benchmarks/loader.py --size 224      # the paper's resolution
    python benchmarks/loader.py --help          # steps, rounds, workers, data folder

It draws (once, then reuses) a small synthetic DVM-Car set under data/benchmark/, builds the uint8
cache from it with carcolor.data.prepare, and links the cache's training images into an ImageFolder
tree (one folder per colour). Then, in this one process, on the same images, model, image size,
batch size and number of steps, it times in turn, round after round:

  carcolor            CachedBatches (uint8 cache, batch crop/flip/normalise) + carcolor.training.loop's
                      train step (channels_last, foreach optimizer), as a grid cell trains;
  folder+our-step     ImageFolder + PIL + transforms + DataLoader feeding that same train step;
  folder+plain-step   ImageFolder + PIL + transforms + DataLoader and the textbook loop
                      (default memory format and optimizer): the plain torchvision baseline.

Each loop warms up for a few steps before it is timed. It prints training images/s per round, the
medians, and the ratios: carcolor / folder+plain-step is the end-to-end speed-up (target >= 1.3 on
a 2-core CPU), carcolor / folder+our-step the part due to the input pipeline alone.

Like carcolor.training.train.run on the CPU, it lets glibc keep freed memory in the process (see
benchmarks/README.md); that setting is process-wide, so all three loops run with it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runs from a checkout, installed or not

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from carcolor import defaults  # noqa: E402
from carcolor.training import models, optimizers as optim  # noqa: E402
from carcolor.data import prepare  # noqa: E402
from carcolor.data.cache import load_prepared  # noqa: E402
from carcolor.data import synth  # noqa: E402
from carcolor.training import loop, runtime  # noqa: E402
from carcolor.training import train as cctrain  # noqa: E402
from carcolor.training.batches import MEAN, STD, CachedBatches, TrainPreset  # noqa: E402

COLOURS = ["Black", "Grey", "White", "Blue", "Silver", "Red", "Brown", "Green", "Yellow", "Beige", "Orange"]
ADVERTS, PHOTOS, N_TRAIN, N_VAL = 16, 4, 40, 4  # 64 photos per colour; 40 of each colour are trained on


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64; the paper: 224)")
    p.add_argument("--arch", default="mobilenet_v2", help="architecture (default mobilenet_v2)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per loop and round "
                   "(default on the CPU 24 at <= 96 px, else 4; on cuda 100)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each timed stretch (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each times every loop once (default 3)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the baseline (default: the machine's cores, at most 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the training step")
    p.add_argument("--optimizer", default="adam", help="optimizer of all loops (default adam)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the steps run (default cpu; on cuda our loop keeps the cache on the GPU, "
                        "uses bf16 autocast and stays eager: benchmarks/gpu_check.py measures compiled)")
    p.add_argument("--data-dir", default=str(REPO / "data" / "benchmark"),
                   help="where the synthetic images, the cache and the ImageFolder tree go (reused)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--smoke", action="store_true",
                   help="a seconds-long check of this script: 4 colours, 32 px, 2 steps, 1 round")
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.batch_size, args.rounds, args.warmup = 32, 16, 1, 1
        args.steps = args.steps or 2
    if args.steps is None:  # a GPU step takes milliseconds: 100 steps make a stable rate
        args.steps = 100 if args.device == "cuda" else 24 if args.size <= 96 else 4
    if args.workers is None:
        args.workers = min(os.cpu_count() or 1, 8)
    return args


# --------------------------------------------------------------------------- data


def build_data(data_dir: Path, size: int, smoke: bool) -> tuple[Path, Path]:
    """The synthetic set, its uint8 cache at `size` px and an ImageFolder tree of the same images."""
    colours = COLOURS[:4] if smoke else COLOURS
    adverts, n_train = (6, 12) if smoke else (ADVERTS, N_TRAIN)
    tag = f"{'smoke-' if smoke else ''}{len(colours)}x{adverts}x{PHOTOS}"
    synthetic = data_dir / f"synthetic-{tag}"
    marker = synthetic / "images.csv"
    if not marker.exists():
        print(f"drawing {len(colours) * adverts * PHOTOS} synthetic DVM-Car images into {synthetic}", flush=True)
        t = time.perf_counter()
        frame = synth.generate(synthetic, colours=colours, adverts_per_colour=adverts, photos_per_advert=PHOTOS,
                               workers=os.cpu_count() or 1)
        frame.to_csv(marker, index=False)
        print(f"  done in {time.perf_counter() - t:.1f}s", flush=True)
    cache = data_dir / f"prepared-{tag}-{size}px"
    if not (cache / "dataset.json").exists():
        print(f"building the {size} px uint8 cache in {cache}", flush=True)
        prepare.prepare([synthetic / "resized_DVM"], cache, colours=colours, n_train_per_colour=n_train,
                        n_val_per_colour=N_VAL, image_size=size, seed=0, synthetic=True)
    folder = data_dir / f"imagefolder-{tag}"
    manifest = pd.read_csv(cache / "manifest.csv")
    train = manifest[manifest["split"] == "train"]
    wanted = {folder / row.colour / row.name: Path(row.source) / row.member for row in train.itertuples()}
    if not folder.exists() or sum(1 for _ in folder.rglob("*.jpg")) != len(wanted):
        for link, target in wanted.items():
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target.resolve())
    return cache, folder


# --------------------------------------------------------------------------- the loops


def stream(batches):
    """Batches without end: epoch after epoch."""
    while True:
        yield from batches


def fresh_model(arch: str, n_classes: int, *, channels_last: bool):
    torch.manual_seed(0)
    model = models.build_model(arch, n_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class OurStep:
    """carcolor.training.loop's step: train_one_epoch over `steps` batches, as a grid cell trains (eager).

    Its time is the training loop's own clock (`seconds` of train_one_epoch: from the first batch to
    the last step, synchronised on CUDA), not the scoring and copies the loop does after it."""

    def __init__(self, arch: str, n_classes: int, optimizer: str, device: str):
        cfg = cctrain.TrainConfig.for_cell(arch=arch, optimizer=optimizer, seed=0,
                                           settings={**defaults.defaults()["train"], "device": device})
        self.rt = runtime.resolve_runtime(cfg, 0)
        self.model = fresh_model(arch, n_classes, channels_last=self.rt.channels_last).to(self.rt.device)
        kwargs, self.impl = optim.optimizer_settings(optimizer, {})
        self.optimizer = optim.build_optimizer(optimizer, self.model.parameters(), lr=1e-3, **kwargs)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.n_classes = n_classes

    def __call__(self, batches, steps: int) -> float:
        return loop.train_one_epoch(self.model, self.criterion, self.optimizer, itertools.islice(batches, steps),
                                       self.rt, n_classes=self.n_classes, timing=False)["seconds"]


class PlainStep:
    """The textbook PyTorch loop: default memory format, the optimizer's default implementation."""

    def __init__(self, arch: str, n_classes: int, optimizer: str, device: str):
        self.model = fresh_model(arch, n_classes, channels_last=False).to(device)
        self.optimizer = optim.build_optimizer(optimizer, self.model.parameters(), lr=1e-3)
        self.criterion = torch.nn.CrossEntropyLoss()

    def __call__(self, batches, steps: int) -> float:
        self.model.train()
        sync = torch.cuda.synchronize if next(self.model.parameters()).is_cuda else (lambda: None)
        sync()
        t = time.perf_counter()
        for x, y in itertools.islice(batches, steps):
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(x), y)
            loss.backward()
            self.optimizer.step()
        sync()
        return time.perf_counter() - t


def image_folder_loader(folder: Path, size: int, batch_size: int, workers: int, pin: bool = False):
    """The plain torchvision input pipeline: ImageFolder + PIL + transforms + DataLoader."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Resize((size, size)),
        transforms.RandomCrop(size, padding=4, fill=255),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    dataset = datasets.ImageFolder(str(folder), transform=tf)
    return dataset, torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=pin, generator=torch.Generator().manual_seed(0))


def to_device(batches, device: torch.device):
    """Move DataLoader batches to the device, as a plain GPU loop does."""
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keeps = runtime.keep_freed_memory()  # as carcolor.training.train.run does on the CPU; process-wide, so for all loops
    cache, folder = build_data(Path(args.data_dir), args.size, args.smoke)
    data = load_prepared(cache)
    n_classes = len(data["classes"])
    device = torch.device(args.device)
    dataset, loader = image_folder_loader(folder, args.size, args.batch_size, args.workers, pin=device.type == "cuda")
    our_step = OurStep(args.arch, n_classes, args.optimizer, args.device)
    ours = CachedBatches(data["train_images"], data["train_labels"], batch_size=args.batch_size,
                         device=device, shuffle=True, seed=0, preset=TrainPreset(crop_padding=4),
                         drop_last=True, on_device=True, dtype=our_step.rt.input_dtype)
    if len(dataset) != len(data["train_labels"]):
        raise SystemExit(f"ImageFolder has {len(dataset)} images, the cache {len(data['train_labels'])}")
    loops = {
        "carcolor": (stream(ours), our_step),
        "folder+our-step": (None, OurStep(args.arch, n_classes, args.optimizer, args.device)),
        "folder+plain-step": (None, PlainStep(args.arch, n_classes, args.optimizer, args.device)),
    }
    folder_batches = stream(loader)  # one DataLoader (persistent workers) for both folder loops
    if device.type == "cuda":
        folder_batches = to_device(folder_batches, device)
    print(f"\n{args.arch} on {args.device}, {args.size} px, batch {args.batch_size}, {len(dataset)} training images "
          f"({n_classes} colours), {args.steps} timed steps after {args.warmup} warm-up per loop and round, "
          f"{args.rounds} round(s); torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, DataLoader workers {args.workers}; optimizer {args.optimizer} "
          f"({our_step.impl} in our step); glibc keeps freed memory: {keeps}\n", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: nobody always goes first
        line = []
        for name in order:
            batches, step = loops[name]
            batches = batches if batches is not None else folder_batches
            step(batches, args.warmup)
            seconds = step(batches, args.steps)
            rates[name].append(args.steps * args.batch_size / seconds)
            line.append(f"{name} {rates[name][-1]:7.1f}")
        print(f"round {r + 1}: " + "   ".join(line) + "  images/s", flush=True)
    median = {name: statistics.median(v) for name, v in rates.items()}
    per_round = [a / c for a, c in zip(rates["carcolor"], rates["folder+plain-step"])]
    result = {
        "arch": args.arch, "device": args.device, "size": args.size, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "rounds": args.rounds, "workers": args.workers,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "keep_freed_memory": keeps,
        "images_per_s": rates, "median_images_per_s": median,
        "ratio_vs_plain": median["carcolor"] / median["folder+plain-step"],
        "ratio_vs_plain_per_round": per_round,
        "ratio_input_pipeline": median["carcolor"] / median["folder+our-step"],
    }
    print("\nmedian training images/s:")
    for name in names:
        print(f"  {name:18s} {median[name]:8.1f}")
    print(f"\nratio carcolor / plain torchvision loop (folder+plain-step): {result['ratio_vs_plain']:.2f}"
          f"  (per round: {', '.join(f'{x:.2f}' for x in per_round)}; target >= 1.3)")
    print(f"ratio carcolor / folder+our-step (input pipeline alone):     {result['ratio_input_pipeline']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
