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

COMMAND = "config"
# Whatever the checks' outcome depends on besides the config, the notebook and their own code.
KEY_DISTRIBUTIONS = ("torch", "torchvision", "timm", "nbformat")
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_optimizers(cfg: dict) -> None:
    """Build each grid optimizer with the config's settings on a dummy parameter and take one step."""
    import torch

    from .training import optimizers

    train = cfg["train"]
    kwargs = train["optimizer_kwargs"]
    for name in cfg["grid"]["optimizers"]:
        param = torch.nn.Parameter(torch.ones(1))
        try:
            # One step too, as the training loop takes it: Adam, for one, unpacks `betas` only when it steps.
            opt = optimizers.build_optimizer(name, [param], lr=train["lr"], weight_decay=train["weight_decay"],
                                             **kwargs)
            (param * param).sum().backward()
            opt.step()
        except (TypeError, ValueError, IndexError, KeyError, RuntimeError) as exc:
            raise ConfigError(_optimizer_problem(name, train, exc)) from exc


def _optimizer_problem(name: str, train: dict, exc: Exception) -> str:
    reason = _first_line(exc.__cause__ or exc)  # build_optimizer wraps torch's TypeError in its own ValueError
    kwargs = train["optimizer_kwargs"]
    if kwargs:
        return f"config 'train.optimizer_kwargs' {kwargs}: optimizer {name!r} rejects it: {reason}"
    # No keyword arguments of the user's: what it rejects is the lr or weight_decay every optimizer is given.
    return (f"config 'grid.optimizers': optimizer {name!r} rejects lr={train['lr']}, "
            f"weight_decay={train['weight_decay']}: {reason}; choose another optimizer or change those settings.")


def check_models(cfg: dict) -> None:
    """Build each grid architecture untrained and run one forward pass at the config's image size."""
    size, classes = cfg["data"]["image_size"], n_classes(cfg)
    for arch in cfg["grid"]["archs"]:
        _check_forward(_build(arch, classes), arch, size, classes)


def _build(arch: str, classes: int):
    from .training import models

    try:
        # Never the pretrained weights: a check must not need the network.
        return models.build_model(arch, classes, pretrained=False).eval()
    except Exception as exc:  # any library's failure; reported in one line and stopped here
        raise ConfigError(f"architecture {arch!r} cannot be built with {classes} classes "
                          f"({type(exc).__name__}: {_first_line(exc)}); choose another architecture.") from exc


def _check_forward(model, arch: str, size: int, classes: int) -> None:
    import torch

    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, size, size))
    except Exception as exc:  # the models' own asserts and shape errors have no common type
        raise ConfigError(f"architecture {arch!r} cannot take {size} px images ({type(exc).__name__}: "
                          f"{_first_line(exc)}); set data.image_size to the size it expects or choose "
                          f"another architecture.") from exc
    if tuple(getattr(out, "shape", ())) != (1, classes):
        shape = tuple(getattr(out, "shape", ())) or type(out).__name__
        raise ConfigError(f"architecture {arch!r} gives outputs of shape {shape} for one image, not {classes} "
                          f"class scores ((1, {classes})); choose a classification architecture.")


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


def check_pretrained(cfg: dict) -> None:
    """train.pretrained: each architecture's ImageNet weights are in the download cache, or can be
    fetched now (once; training then reads the cache)."""
    if not cfg["train"]["pretrained"]:
        return
    from .training import models

    for arch in cfg["grid"]["archs"]:
        try:
            models.build_model(arch, n_classes(cfg), pretrained=True)
        except Exception as exc:  # urllib, huggingface_hub and torch.hub each raise their own kinds
            raise ConfigError(f"config 'train.pretrained' is true but the ImageNet weights of {arch!r} are not in "
                              f"the download cache and cannot be fetched ({type(exc).__name__}: {_first_line(exc)}); "
                              f"run once where the network is reachable (the weights are cached), or set "
                              f"train.pretrained: false.") from None


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
        raise ConfigError(f"notebook {path} is not a valid Jupyter notebook ({_first_line(exc)}); fix it or "
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


def check_all(cfg: dict, notebook: str | Path = TEMPLATE) -> None:
    """Every check that builds something, cheapest first; raises ConfigError on the first problem."""
    check_notebook(notebook)
    check_optimizers(cfg)
    check_models(cfg)
    check_pretrained(cfg)


def check_all_cached(cfg: dict, notebook: str | Path, stamp_dir: str | Path) -> None:
    """check_all, skipped when the same config, notebook and code passed before (a stamp in stamp_dir).

    The Snakefile calls this on every run, no-op runs included, and the checks cost a torch import
    and a few model builds.
    """
    notebook, stamp_dir = Path(notebook), Path(stamp_dir)
    stamp = stamp_dir / check_key(cfg, notebook)
    if stamp.exists():
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile by a parallel run: it passed all the same
            os.utime(stamp)  # recently used: pruned last
        return
    check_all(cfg, notebook)
    _write_stamp(stamp)
    _prune(stamp_dir, MAX_STAMPS)


def check_key(cfg: dict, notebook: str | Path) -> str:
    """sha256 of the resolved config, the notebook's bytes, the code and the versions the checks use."""
    from importlib import metadata

    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    digest.update(_read_bytes(Path(notebook)))
    digest.update(sources.digest(sources.closure([__name__])).encode())
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
