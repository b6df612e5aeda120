"""Checks of a validated config that need a stage's knowledge, and the `carcolor config` command.

config.validate catches what the config says on its own. `check_config` adds what the stages know,
cheaply (colours the data can have, architecture and optimizer names); `check_all` what would fail
once training starts (an optimizer rejecting its keyword arguments, a model that needs another image
size, a missing GPU, a broken notebook), in seconds and before any job runs. Each raises
config.ConfigError in one line.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
from pathlib import Path

from . import __version__, config, provenance, sources
from .config import ConfigError, n_classes
from .data.colours import COLOURS, NON_COLOURS
from .training.notebook import PARAMETERS, TEMPLATE
from .training.preflight import first_line

COMMAND = "config"
# The libraries the built checks build with: their versions are part of a stamp's key.
KEY_DISTRIBUTIONS = ("torch", "torchvision", "timm")
MAX_STAMPS = 20


def check_config(cfg: dict) -> None:
    """The cheap checks a stage's knowledge allows: colour names, architecture and optimizer names."""
    from .training import models, optimizers

    _check_colours(cfg["data"])
    _check_synthetic_sizes(cfg)
    for arch in cfg["grid"]["archs"]:
        _named(models.check_arch, arch)
    for name in cfg["grid"]["optimizers"]:
        _named(optimizers.check_optimizer, name)


def _named(check, name: str) -> None:
    try:
        check(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_colours(data: dict) -> None:
    for colour in data["colours"] or []:
        if colour in NON_COLOURS:
            raise ConfigError(f"config 'data.colours' lists {colour!r}, which is not a colour class "
                              f"(never use {' or '.join(NON_COLOURS)}).")
    if data["source"] != "synthetic":
        return
    drawable = tuple(COLOURS)
    for colour in data["colours"] or []:
        if colour not in drawable:
            raise ConfigError(f"config 'data.colours' lists {colour!r}, a colour the synthetic generator cannot "
                              f"draw.{_did_you_mean(colour, drawable)} Use one of (case-sensitive): "
                              f"{', '.join(drawable)}; or data.source: dvm for real photos.")
    top_n = data["top_n_colours"]
    if top_n and top_n > len(drawable):
        raise ConfigError(f"config 'data.top_n_colours' is {top_n} but the synthetic generator draws only "
                          f"{len(drawable)} colours; set it to {len(drawable)} or fewer, or use data.source: dvm.")


def _check_synthetic_sizes(cfg: dict) -> None:
    """The synthetic draw gives every colour the same adverts of the same size: whether they split into the
    requested counts is known before anything is drawn, by preparation's own rule."""
    import numpy as np

    from .data.selection import DataError, asked, check_sizes

    data, draw = cfg["data"], cfg["synthetic"]
    if data["source"] != "synthetic":
        return
    counts = {split: data[f"n_{split}_per_colour"] for split in ("train", "val", "test")}
    sizes = np.full(draw["adverts_per_colour"], draw["photos_per_advert"])
    try:
        check_sizes(sizes, counts, "any")
    except DataError:
        photos = "photo" if draw["photos_per_advert"] == 1 else "photos"
        raise ConfigError(f"config 'synthetic' draws {draw['adverts_per_colour']} adverts x {draw['photos_per_advert']} "
                          f"{photos} per colour ({int(sizes.sum())} images), which cannot be split by advert into "
                          f"{asked(counts)} images per colour ('data'): raise synthetic.adverts_per_colour or "
                          f"photos_per_advert, or lower data.n_train_per_colour, n_val_per_colour or "
                          f"n_test_per_colour.") from None


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    import difflib

    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1)
    return f" Did you mean {lower[close[0]]!r}?" if close else ""


def check_machine(cfg: dict) -> None:
    """What this machine must have for the jobs that run on it: the CUDA GPU that train.device: cuda
    asks for, and the cores for train.threads (more threads than cores slows a cell many times over
    and the machine with it). Not cached: the answer depends on the machine."""
    threads, usable = cfg["train"]["threads"], provenance.usable_cpus()
    if threads > usable:
        raise ConfigError(f"config 'train.threads' is {threads} but this machine has {usable} usable core"
                          f"{'s' if usable != 1 else ''}; set train.threads to {usable} or fewer (the thread count "
                          f"is part of a cell's identity: it changes the order of floating-point sums).")
    if cfg["train"]["device"] != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"config 'train.device' is 'cuda' but torch {torch.__version__} sees no CUDA GPU on "
                          f"this machine; set train.device: auto (CUDA when present, else the CPU) or cpu.")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the training notebook {path}: {exc.strerror}.") from exc


def check_notebook(path: str | Path = TEMPLATE) -> None:
    """The training template: valid JSON, a valid notebook, a `parameters` cell assigning PARAMETERS."""
    path = Path(path)
    cell = _parameters_cell(_read_notebook(path), path)
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise ConfigError(f"notebook {path}: its parameters cell is not valid Python (line {exc.lineno}: "
                          f"{exc.msg}); fix that cell.") from exc
    missing = [name for name in PARAMETERS if name not in _assigned(tree)]
    if missing:
        raise ConfigError(f"notebook {path}: its parameters cell does not assign {', '.join(missing)}; papermill "
                          f"passes {', '.join(PARAMETERS)}: give each a default there "
                          f"(e.g. `{missing[0]} = None`).")


def _read_notebook(path: Path):
    import nbformat

    text = _read_bytes(path).decode("utf-8", errors="replace")
    try:
        json.loads(text)  # nbformat's own error would not say where
    except json.JSONDecodeError as exc:
        raise ConfigError(f"notebook {path} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                          f"fix it or restore it with `git checkout -- {path}`.") from exc
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises its own errors, several kinds, for one cause: a bad notebook
        raise ConfigError(f"notebook {path} is not a valid Jupyter notebook ({first_line(exc)}); fix it or "
                          f"restore it with `git checkout -- {path}`.") from exc
    return nb


def _parameters_cell(nb, path: Path):
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    raise ConfigError(f"notebook {path} has no code cell tagged 'parameters', so papermill cannot inject each "
                      f"grid cell's values: give the cell that assigns {', '.join(PARAMETERS)} "
                      f"the tag 'parameters'.")


def _assigned(tree: ast.Module) -> set[str]:
    targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in tree.body if isinstance(node, ast.AnnAssign)]
    return {sub.id for target in targets for sub in ast.walk(target) if isinstance(sub, ast.Name)}


def check_built(cfg: dict) -> None:
    """What training would fail on (carcolor.training.preflight): optimizers, models, pretrained weights."""
    from .training import preflight

    try:
        preflight.check_all(preflight.inputs(cfg, n_classes(cfg)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_all(cfg: dict, notebook: str | Path = TEMPLATE) -> None:
    """The notebook template and every check that builds something; raises ConfigError on the first problem."""
    check_notebook(notebook)
    check_built(cfg)


def check_built_cached(cfg: dict, stamp_dir: str | Path) -> None:
    """check_built, skipped when the same config and the same checking code passed before (a stamp in
    stamp_dir). The Snakefile calls this on every run, no-op runs included, and the checks cost a torch
    import and a few model builds."""
    stamp_dir = Path(stamp_dir)
    stamp = stamp_dir / check_key(cfg)
    if stamp.exists():
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile by a parallel run: it passed all the same
            os.utime(stamp)  # recently used: pruned last
        return
    check_built(cfg)
    _write_stamp(stamp)
    _prune(stamp_dir, MAX_STAMPS)


def check_key(cfg: dict) -> str:
    """sha256 of what the built checks read of the config (preflight.inputs), the code they run
    (carcolor.training.preflight and what it imports) and the versions of the libraries they build with."""
    from importlib import metadata

    from .training import preflight

    digest = hashlib.sha256(json.dumps(preflight.inputs(cfg, n_classes(cfg)), sort_keys=True).encode())
    digest.update(sources.digest(sources.closure(["carcolor.training.preflight"])).encode())
    versions = [__version__] + [_version(metadata, name) for name in KEY_DISTRIBUTIONS]
    digest.update(json.dumps(versions).encode())
    return digest.hexdigest()


def _version(metadata, name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _write_stamp(stamp: Path) -> None:
    stamp.parent.mkdir(parents=True, exist_ok=True)
    # Parallel snakemake invocations may write the same stamp: each to its own temp name, then renamed.
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text("carcolor checks passed\n")
    os.replace(tmp, stamp)


def _prune(stamp_dir: Path, keep: int) -> None:
    stamps = sorted((p for p in stamp_dir.iterdir() if not p.name.startswith(".")), key=_mtime, reverse=True)
    for old in stamps[keep:]:
        old.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # pruned meanwhile by a parallel run
        return 0.0


def check_cell(cfg: dict, cell: str) -> None:
    """`make cell CELL=...`: the cell is one of this grid's (its name, or none given, is refused with the list)."""
    names = [c.name for c in config.cells(cfg)]
    if cell not in names:
        what = f"unknown cell {cell!r}" if cell else "no cell named (make cell CELL=<name>)"
        raise ConfigError(f"{what}; cells of this grid: {', '.join(names)}.")


def check_made_with(files: list[str], record: str | Path) -> None:
    """The config files given are those that made the results folder (its config record, if it has one):
    re-running one cell with other files would plan another grid over the results."""
    import yaml

    record = Path(record)
    if not record.is_file():
        return
    made = (yaml.safe_load(record.read_text()) or {}).get("configfiles") or []
    if [Path(f).resolve() for f in made] != [Path(f).resolve() for f in files]:
        made_with = f'CONFIG="{" ".join(made)}"' if made else "no CONFIG"
        given = f'CONFIG="{" ".join(files)}"' if files else "none"
        raise ConfigError(f"{record.parent}/ was made with {made_with} ({record}), and this command gives {given}: "
                          f"give the same CONFIG to re-run one of its cells ({made_with}).")


def add_arguments(parser) -> None:
    parser.add_argument("configfile", nargs="*", help="config files merged in order over experiments/config.yaml")
    parser.add_argument("--cells", action="store_true", help="print the grid's cell names instead")
    parser.add_argument("--cell", default=None, help="check that this cell is one of the grid's (make cell)")
    parser.add_argument("--made-with", default=None, metavar="RECORD",
                        help="check that the config files are those that RECORD says made the results "
                             "(results/config.yaml)")
    parser.add_argument("--no-deep", dest="deep", action="store_false",
                        help="skip what needs torch or this machine: building each model and optimizer, the "
                             "notebook, the device and the cores (seconds)")


def run(args) -> int:
    """`carcolor config`: validate config files merged in order over the defaults and print the result."""
    cfg = config.validate(config.read_files(args.configfile))
    check_config(cfg)
    if args.cell is not None:
        check_cell(cfg, args.cell)
    if args.made_with:
        check_made_with(args.configfile, args.made_with)
    if args.deep:
        check_machine(cfg)
        check_all(cfg)
    if args.cells:
        print("\n".join(c.name for c in config.cells(cfg)))
    elif args.cell is None:
        print(config.dump(cfg), end="")
    return 0


if __name__ == "__main__":
    import sys

    from carcolor.command import main

    sys.exit(main(__spec__.name))
