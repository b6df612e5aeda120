"""Experiment configuration: validate against the JSON Schema, fill defaults, expand the grid.

The flow is one way: experiments/config.yaml -> config.schema.yaml (this module) -> papermill
parameters -> carcolor.train.TrainConfig -> function arguments.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "experiments" / "config.schema.yaml"
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

    data = config["data"]
    if data.get("top_n_colours") and data.get("colours"):
        raise ConfigError("config 'data': give either 'colours' or 'top_n_colours', not both.")
    if not data.get("top_n_colours") and not data.get("colours"):
        raise ConfigError("config 'data': give 'colours' (a list) or 'top_n_colours' (a number).")
    for colour in data.get("colours") or []:
        if colour in NON_COLOURS:
            raise ConfigError(f"config 'data.colours' lists {colour!r}, which is not a colour class "
                              f"(never use {' or '.join(NON_COLOURS)}).")
    if data["source"] == "dvm" and not data["paths"] and not data["download"]:
        raise ConfigError("config 'data.source' is 'dvm' but 'data.paths' is empty: list the DVM-Car "
                          "zip files or folders, or name archives under 'data.download'.")
    for arch in config["grid"]["archs"]:
        models.check_arch(arch)
    for name in config["grid"]["optimizers"]:
        optim.check_optimizer(name)


def cells(config: dict) -> list[Cell]:
    """The grid: the product of architectures x optimizers x seeds, in config order."""
    grid = config["grid"]
    return [Cell(a, o, s) for a, o, s in itertools.product(grid["archs"], grid["optimizers"], grid["seeds"])]


def cell_by_name(config: dict, name: str) -> Cell:
    by_name = {c.name: c for c in cells(config)}
    if name not in by_name:
        raise ConfigError(f"unknown cell {name!r}; cells of this grid: {', '.join(by_name)}.")
    return by_name[name]


def load(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    return validate(raw)


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def train_params(config: dict, cell: Cell) -> dict[str, Any]:
    """The parameters handed to experiments/train.ipynb for one cell (papermill -y)."""
    return {"cell": cell.name, "arch": cell.arch, "optimizer": cell.optimizer, "seed": cell.seed,
            "train": _copy(config["train"])}
