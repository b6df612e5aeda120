"""The `carcolor` command: one sub-command per workflow stage (the Snakefile calls these)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import atomic


def _generate(args) -> int:
    from .synth import generate

    settings = json.loads(args.settings)
    out = Path(args.out)
    frame = generate(out, colours=settings["colours"], adverts_per_colour=settings["adverts_per_colour"],
                     photos_per_advert=settings["photos_per_advert"], seed=settings["seed"], progress=True,
                     workers=args.workers if args.workers is not None else os.cpu_count() or 1)
    marker = out / "images.csv"
    atomic.write_csv(frame, marker)  # last: the mark of a complete dataset
    print(f"[generate] {len(frame)} images in {out / 'resized_DVM'}", file=sys.stderr)
    return 0


def _prepare(args) -> int:
    from .prepare import prepare

    settings = json.loads(args.settings)
    sources = settings.pop("sources")
    prepare(sources, args.out, workers=args.workers, **settings)
    return 0


def _collect(args) -> int:
    from .tables import collect

    paths = collect(args.runs, args.prepared, args.out)
    print(f"[collect] {len(args.runs)} cells -> {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def _check(args) -> int:
    from . import config

    cfg = config.validate(_merged(args.configfile))
    if args.deep:
        from . import checks

        checks.check_all(cfg, checks.NOTEBOOK)
    if args.cells:
        print("\n".join(c.name for c in config.cells(cfg)))
    else:
        print(config.dump(cfg), end="")
    return 0


def _merged(paths: list[str]) -> dict:
    """Config files merged in order, later ones overriding keys of earlier ones (as Snakemake does)."""
    from .config import read_yaml

    merged: dict = {}
    for path in paths:
        _update(merged, read_yaml(path))
    return merged


def _figures(args) -> int:
    from .plots import save_figures

    for path in save_figures(args.results, args.out):
        print(f"[figures] {path}")
    return 0


def _update(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _update(base[key], value)
        else:
            base[key] = value


def build_parser() -> argparse.ArgumentParser:
    from . import download, notebook, pages, render

    parser = argparse.ArgumentParser(prog="carcolor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="draw the synthetic DVM-format dataset")
    p.add_argument("--out", required=True, help="folder that receives resized_DVM/ and images.csv")
    p.add_argument("--settings", required=True, help="JSON: colours, adverts_per_colour, photos_per_advert, seed")
    p.add_argument("--workers", type=int, default=None, help="drawing processes (default: all cores)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("prepare", help="select, split by advert and decode into the uint8 cache")
    p.add_argument("--out", required=True)
    p.add_argument("--settings", required=True, help="JSON: sources, colours, counts, image_size, seed, ...")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("collect", help="gather every cell's results into tidy tables")
    p.add_argument("--runs", nargs="+", required=True, help="results/runs/<cell> folders")
    p.add_argument("--prepared", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_collect)

    p = sub.add_parser("figures", help="draw the report's figures as PNG files")
    p.add_argument("--results", default="results", help="the folder with tables/ (default: %(default)s)")
    p.add_argument("--out", default="results/figures", help="where <name>.png go (default: %(default)s)")
    p.set_defaults(func=_figures)

    p = sub.add_parser("config", help="validate config files (merged in order) and print the result")
    p.add_argument("configfile", nargs="+")
    p.add_argument("--cells", action="store_true", help="print the grid's cell names instead")
    p.add_argument("--no-deep", dest="deep", action="store_false",
                   help="skip building each model and optimizer and checking the notebook (needs torch: seconds)")
    p.set_defaults(func=_check)

    download.register(sub)
    notebook.register(sub)
    pages.register(sub)
    render.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"carcolor {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
