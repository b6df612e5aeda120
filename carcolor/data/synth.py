"""Synthetic DVM-Car: procedurally drawn car photos in DVM-Car's naming and folder layout.

The real DVM-Car image archive (``resized_DVM``) is large and cannot be fetched in every
environment, so the project's default dataset is generated here.  The generator writes

    root/resized_DVM/{Maker}/{Genmodel}/{Year}/{Color}/
        {Maker}$${Genmodel}$${Year}$${Color}$${Genmodel_ID}$${AdvIndex}$$image_{N}.jpg

exactly like the real archive: 300x300 RGB JPEGs, the car cut out and placed on a white
background, several photos per advert (the same car seen with a slightly different camera
position, scale, perspective, side and lighting).  Maker and model names deliberately include
spaces, apostrophes, ``+``, hyphens and underscores, as the real names do, so that the
parsing and preparation code is exercised on the awkward cases.  Each advert's car is sampled and
drawn by carcolor.data.car and photographed by carcolor.data.photo; this module names the adverts,
writes their files and draws adverts in parallel.

The colour task is made deliberately non-trivial: paint shades vary per advert (dark and light
variants, metallic finishes), exposure and white balance vary per photo, and specular highlights
wash colour out.  The look-alike groups (silver/grey/white, brown/beige/orange) overlap in
mean colour, as they do in the real photographs.

Determinism: every advert draws its random numbers from
``numpy.random.default_rng([seed, colour_index, advert_index])`` where ``colour_index`` is the
colour's position in :data:`COLOURS` (not in the caller's list).  Identical arguments therefore
give byte-identical files, and changing ``adverts_per_colour`` or the colour subset leaves the
adverts that exist in both runs unchanged.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import atomic
from .car import draw_car, sample_car
from .colours import COLOURS
from .photo import photograph

COMMAND = "generate"
TREE = "resized_DVM"  # the real archive's folder, which the generated tree imitates

# (maker, maker id, ((model, model id, body styles the model comes in), ...)).
# Genmodel_ID = f"{maker id}_{model id}".  Names mirror the awkward characters of the real data.
MAKERS: tuple[tuple[str, int, tuple[tuple[str, int, tuple[str, ...]], ...]], ...] = (
    ("Land Rover", 47, (("Range Rover Evoque", 12, ("suv",)), ("Discovery Sport", 7, ("suv",)))),
    ("Citroen", 16, (("Grand C4 Picasso", 14, ("estate",)), ("C3", 5, ("hatchback",)))),
    ("Kia", 44, (("Pro_Cee'd", 20, ("hatchback",)), ("Sportage", 24, ("suv",)), ("Cee'd", 3, ("hatchback", "estate")))),
    ("Nissan", 64, (("Micra C+C", 25, ("hatchback",)), ("Pulsar", 32, ("hatchback",)), ("X-Trail", 41, ("suv",)))),
    ("Mercedes-Benz", 59, (("C-Class", 8, ("saloon", "estate")), ("E-Class", 11, ("saloon", "estate")))),
    ("Alfa Romeo", 2, (("Giulietta", 9, ("hatchback",)), ("159", 1, ("saloon", "estate")))),
    ("Volkswagen", 95, (("Golf", 17, ("hatchback", "estate")), ("Passat", 28, ("saloon", "estate")))),
    ("Ford", 29, (("Focus", 21, ("hatchback", "estate", "saloon")), ("S-MAX", 39, ("estate",)))),
)

_MODELS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = tuple(
    (maker, model, f"{maker_id}_{model_id}", styles)
    for maker, maker_id, models in MAKERS
    for model, model_id, styles in models
)


# --------------------------------------------------------------------------- public API


def _check_colours(colours: Sequence[str]) -> list[str]:
    if isinstance(colours, str):
        colours = [colours]
    out = list(colours)
    if not out:
        raise ValueError(f"colours must not be empty; valid choices: {', '.join(COLOURS)}")
    for c in out:
        if c not in COLOURS:
            raise ValueError(f"unknown colour {c!r}; valid choices: {', '.join(COLOURS)}")
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise ValueError(f"duplicate colour(s) {dup}; valid choices: {', '.join(COLOURS)}")
    return out


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return int(workers)


def _advert(tree: Path, colour: str, ci: int, ai: int, seed: int, photos_per_advert: int, size: int,
            quality: int) -> list[dict]:
    """Draw one advert (one car, ``photos_per_advert`` photos), write its JPEGs into the tree being
    built, return their rows (paths as they will be once the tree is resized_DVM/)."""
    k = size / 300.0  # drawing scale: the working canvas is about twice the output resolution
    rng = np.random.default_rng([seed, ci, ai])
    maker, model, gid, styles = _MODELS[int(rng.integers(len(_MODELS)))]
    style = styles[int(rng.integers(len(styles)))]
    year = int(rng.integers(2006, 2021))
    adv_index = 1 + ci + len(COLOURS) * ai  # unique over all colours, hence per Genmodel_ID
    car = sample_car(colour, style, rng)
    layer = draw_car(car, k, rng)
    numbers = np.sort(rng.choice(np.arange(1, 2 * photos_per_advert + 1), size=photos_per_advert, replace=False))
    folder = Path(maker, model, str(year), colour)
    (tree / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for n in numbers:
        img = photograph(layer, car, size, rng)
        name = f"{maker}$${model}$${year}$${colour}$${gid}$${adv_index}$$image_{int(n)}.jpg"
        img.save(tree / folder / name, format="JPEG", quality=quality)
        rows.append(dict(path=(TREE / folder / name).as_posix(), maker=maker, genmodel=model, year=year,
                         color=colour, genmodel_id=gid, adv_index=adv_index, image_n=int(n)))
    return rows


def _advert_star(task: tuple) -> list[dict]:
    return _advert(*task)


def generate(
    root: Path,
    *,
    colours: Sequence[str],
    adverts_per_colour: int,
    photos_per_advert: int,
    seed: int = 0,
    size: int = 300,
    quality: int = 90,
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Write the tree under root/resized_DVM/... and return one row per written image with columns
    path (relative to root, posix), maker, genmodel, year, color, genmodel_id, adv_index, image_n.

    Every advert is one car (maker, model, year, body style, paint shade) photographed
    ``photos_per_advert`` times; its AdvIndex is unique across all colours and models, so the advert
    key ``Genmodel_ID$$AdvIndex`` identifies one car.  Photos are numbered like the real data
    (``image_N`` with N in 1..2*photos_per_advert, increasing, not necessarily contiguous).
    The tree is drawn into a fresh folder next to it and renamed into place when complete (an earlier
    draw's tree is replaced whole, so none of its photos survives into this one; a killed draw's
    folder is removed by the next). ``workers`` processes draw adverts in parallel; the files do not
    depend on it.
    """
    colours = _check_colours(colours)
    for name, val, lo in (("adverts_per_colour", adverts_per_colour, 1), ("photos_per_advert", photos_per_advert, 1),
                          ("seed", seed, 0), ("size", size, 32), ("quality", quality, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if quality > 100:
        raise ValueError(f"quality must be <= 100, got {quality!r}")
    root = Path(root)
    build = root / f".{TREE}.build"
    shutil.rmtree(build, ignore_errors=True)  # a killed draw's
    build.mkdir(parents=True)
    canon = {c: i for i, c in enumerate(COLOURS)}
    total = len(colours) * adverts_per_colour * photos_per_advert
    step = max(1, math.ceil(total / 10))
    tasks = [(build, colour, canon[colour], ai, seed, photos_per_advert, size, quality)
             for colour in colours for ai in range(adverts_per_colour)]
    workers = min(_check_workers(workers), len(tasks))
    rows: list[dict] = []
    done = 0
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # Every advert has its own random stream, so drawing them in parallel changes no byte.
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "fork" if sys.platform.startswith("linux") else "spawn")))
            results = pool.map(_advert_star, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
        else:
            results = map(_advert_star, tasks)
        for advert_rows in results:  # in task order, whatever order the workers finish in
            for row in advert_rows:
                rows.append(row)
                done += 1
                if progress and (done % step == 0 or done == total):
                    print(f"synth: {done}/{total} images ({100 * done // total}%)", file=sys.stderr, flush=True)
    atomic.replace_folder(build, root / TREE)
    return pd.DataFrame(rows, columns=["path", "maker", "genmodel", "year", "color", "genmodel_id", "adv_index",
                                       "image_n"])


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="folder that receives resized_DVM/ and images.csv")
    p.add_argument("--settings", required=True, help="JSON: colours, adverts_per_colour, photos_per_advert, seed")
    p.add_argument("--workers", type=int, default=None, help="drawing processes (default: all cores)")


def run(args) -> int:
    """`carcolor generate`: draw the dataset, then write images.csv, the mark of a complete draw."""
    import json

    settings = json.loads(args.settings)
    out = Path(args.out)
    frame = generate(out, colours=settings["colours"], adverts_per_colour=settings["adverts_per_colour"],
                     photos_per_advert=settings["photos_per_advert"], seed=settings["seed"], progress=True,
                     workers=args.workers if args.workers is not None else os.cpu_count() or 1)
    atomic.write_csv(frame, out / "images.csv")  # last: the mark of a complete dataset
    print(f"[generate] {len(frame)} images in {out / 'resized_DVM'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
