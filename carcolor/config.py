"""Experiment configuration: validate against the JSON Schema, fill defaults, expand the grid.

The flow is one way: experiments/config.yaml -> config.schema.yaml (this module) -> papermill
parameters -> carcolor.train.TrainConfig -> function arguments.
"""
from __future__ import annotations

import ast
import difflib
import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "experiments" / "config.schema.yaml"
SYNTH_PATH = Path(__file__).resolve().parent / "synth.py"
# Colours that are never classes: the seller gave none, or the car has several.
NON_COLOURS = ("Unlisted", "Multicolour")


class ConfigError(ValueError):
    """A configuration problem, explained in one line."""


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: (architecture, optimizer, seed)."""

    arch: str
    optimizer: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.optimizer}-s{self.seed}"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = _copy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _copy(value):
    return yaml.safe_load(yaml.safe_dump(value))


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _explain(error: jsonschema.ValidationError, schema: dict) -> str:
    where = _where(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        bad = extra[0] if extra else "?"
        close = difflib.get_close_matches(bad, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        section = "" if where == "(top level)" else f" in '{where}'"
        return f"unknown config key '{bad}'{section}.{hint} Valid keys: {', '.join(allowed)}."
    if error.validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"config '{where}' is {error.instance!r}; valid choices: {choices}."
    if error.validator == "required":
        return f"config is missing {error.message.split(' is a required')[0]} in '{where}'."
    return f"config '{where}': {error.message}."


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate a raw config dict, fill in defaults and run the checks a schema cannot express.

    Returns a new dict; raises ConfigError with a one-line explanation.
    """
    schema = schema or load_schema()
    config = _copy(config or {})
    # Before the schema: it lets nan and inf through every numeric bound (nan > 0 is false, not an error).
    _check_finite(config, "")
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_explain(errors[0], schema))
    # Re-run once more so that defaults of sections that were themselves defaulted are filled.
    validator.validate(config)
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    from . import models, optim  # lazy: keeps a no-op snakemake run fast

    _check_colours(config["data"])
    _check_sources(config["data"])
    _check_batch_size(config)
    for arch in config["grid"]["archs"]:
        models.check_arch(arch)
    for name in config["grid"]["optimizers"]:
        optim.check_optimizer(name)


def _check_finite(value: Any, where: str) -> None:
    """Raise ConfigError on the first nan or infinity anywhere in `value`, naming its dotted key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config '{where or '(top level)'}' is {value}; give a finite number.")
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_finite(sub, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _check_finite(sub, f"{where}.{i}")


def _check_colours(data: dict) -> None:
    if data.get("top_n_colours") and data.get("colours"):
        raise ConfigError("config 'data': give either 'colours' or 'top_n_colours', not both.")
    if not data.get("top_n_colours") and not data.get("colours"):
        raise ConfigError("config 'data': give 'colours' (a list) or 'top_n_colours' (a number).")
    for colour in data.get("colours") or []:
        if colour in NON_COLOURS:
            raise ConfigError(f"config 'data.colours' lists {colour!r}, which is not a colour class "
                              f"(never use {' or '.join(NON_COLOURS)}).")
    if data["source"] == "synthetic":
        _check_synthetic_colours(data)


def _check_synthetic_colours(data: dict) -> None:
    drawable = synthetic_colours()
    for colour in data.get("colours") or []:
        if colour not in drawable:
            raise ConfigError(f"config 'data.colours' lists {colour!r}, a colour the synthetic generator cannot "
                              f"draw.{_did_you_mean(colour, drawable)} Use one of (case-sensitive): "
                              f"{', '.join(drawable)}; or data.source: dvm for real photos.")
    top_n = data.get("top_n_colours")
    if top_n and top_n > len(drawable):
        raise ConfigError(f"config 'data.top_n_colours' is {top_n} but the synthetic generator draws only "
                          f"{len(drawable)} colours; set it to {len(drawable)} or fewer, or use data.source: dvm.")


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1)
    return f" Did you mean {lower[close[0]]!r}?" if close else ""


@functools.lru_cache(maxsize=1)
def synthetic_colours() -> tuple[str, ...]:
    """The colours carcolor.synth can draw, in its order, read from synth.py's source.

    Importing synth pulls in pandas (a third of a second on every snakemake run, no-op runs included),
    and moving COLOURS out of synth.py would change the generate stage's code and so re-draw the data.
    """
    tree = ast.parse(SYNTH_PATH.read_text(), str(SYNTH_PATH))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "COLOURS":
            return tuple(ast.literal_eval(node.value))
    from .synth import COLOURS  # written in a form this reader does not know: pay for the import

    return tuple(COLOURS)


def _check_sources(data: dict) -> None:
    if data["source"] == "dvm" and not data["paths"] and not data["download"]:
        raise ConfigError("config 'data.source' is 'dvm' but 'data.paths' is empty: list the DVM-Car "
                          "zip files or folders, or name archives under 'data.download'.")
    missing = [p for p in data["paths"] if not Path(p).exists()]
    if data["source"] == "dvm" and missing:
        raise ConfigError(f"config 'data.paths' lists {missing[0]!r}, which does not exist (paths are relative "
                          f"to {Path.cwd()}); give the path of a DVM-Car zip or folder, or name the archive "
                          f"under 'data.download' to fetch it.")
    if data["source"] == "synthetic":
        for key in ("paths", "download"):
            if data[key]:
                raise ConfigError(f"config 'data.{key}' is {data[key]} but data.source is 'synthetic', and "
                                  f"'data.paths' and 'data.download' are only read when data.source is 'dvm': "
                                  f"add 'source: dvm' under 'data', or remove '{key}'.")


def n_classes(config: dict) -> int:
    """The number of colour classes of a validated config: its colour list, or its top_n_colours."""
    data = config["data"]
    return len(data["colours"]) if data.get("colours") else data["top_n_colours"]


def _check_batch_size(config: dict) -> None:
    # Training drops the last incomplete batch (train.run, drop_last=True): a batch larger than the
    # training split gives epochs without a single step.
    data, batch = config["data"], config["train"]["batch_size"]
    n_train = data["n_train_per_colour"] * n_classes(config)
    if batch > n_train:
        raise ConfigError(f"config 'train.batch_size' is {batch} but the training split has only {n_train} "
                          f"images ({data['n_train_per_colour']} per colour x {n_classes(config)} colours), and "
                          f"the last incomplete batch is dropped, so no step would run: set train.batch_size "
                          f"to {n_train} or less, or raise data.n_train_per_colour.")


def cells(config: dict) -> list[Cell]:
    """The grid: the product of architectures x optimizers x seeds, in config order."""
    grid = config["grid"]
    return [Cell(a, o, s) for a, o, s in itertools.product(grid["archs"], grid["optimizers"], grid["seeds"])]


def cell_by_name(config: dict, name: str) -> Cell:
    by_name = {c.name: c for c in cells(config)}
    if name not in by_name:
        raise ConfigError(f"unknown cell {name!r}; cells of this grid: {', '.join(by_name)}.")
    return by_name[name]


def read_yaml(path: str | Path) -> dict:
    """One config file as a dict; a syntax error raises ConfigError naming the file, line and column."""
    with open(path) as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_problem(path, exc)) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level is a {type(raw).__name__}, not a mapping of sections "
                          f"(data, synthetic, grid, train); start each section as 'data:' at column 1.")
    return raw or {}


def _yaml_problem(path: str | Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start and mark and start.line != mark.line:
        problem += f" ({context} that starts on line {start.line + 1})"
    return f"{path}{where}: {problem}"


def load(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    return validate(read_yaml(path))


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def train_params(config: dict, cell: Cell) -> dict[str, Any]:
    """The parameters handed to experiments/train.ipynb for one cell (papermill -y)."""
    return {"cell": cell.name, "arch": cell.arch, "optimizer": cell.optimizer, "seed": cell.seed,
            "train": _copy(config["train"])}
