"""Experiment configuration: merged over the defaults, validated against the JSON Schema, the grid.

The flow is one way: experiments/config.yaml (the defaults, carcolor.defaults) with the user's files
merged over it -> config.schema.yaml (this module) -> papermill parameters ->
carcolor.training.train.TrainConfig -> function arguments. The checks that need a stage's knowledge
(colours, architectures, optimizers, the notebook) are carcolor.checks.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import defaults as defaultsmod
from .grid import Cell
from .grid import cells as grid_cells


COMMAND = "record-config"


class ConfigError(ValueError):
    """A configuration problem, explained in one line."""


def load_schema(path: Path = defaultsmod.SCHEMA_FILE) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


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
    if error.validator == "type" and isinstance(error.instance, str) and "number" in str(error.validator_value):
        return f"config '{where}' is the text {error.instance!r}, not a number{_number_hint(error.instance)}."
    why = error.schema.get("description")
    return f"config '{where}': {error.message}" + (f" ({why})." if why else ".")


def _number_hint(text: str) -> str:
    """How to write a number YAML took for text: 1e-3 (YAML 1.1's floats need a dot), or a quoted number."""
    try:
        value = float(text)
    except ValueError:
        return ""
    mantissa, _, exponent = text.strip().lower().partition("e")
    if exponent and "." not in mantissa:
        return f" (YAML reads {text} as text: write {mantissa}.0e{exponent} or {value!r})"
    return f" (write it without quotes: {value!r})"


def validate(config: dict | None, schema: dict | None = None) -> dict:
    """A config merged over the defaults (experiments/config.yaml), checked against the schema and by
    the rules a schema cannot express. Returns a new dict; raises ConfigError with a one-line explanation.
    """
    schema = schema or load_schema()
    config = defaultsmod.resolved(config)
    # Before the schema: it lets nan and inf through every numeric bound (nan > 0 is false, not an error).
    _check_finite(config, "")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_explain(errors[0], schema))
    _check_colours(config["data"])
    _check_sources(config["data"])
    _check_batch_size(config)
    _check_case_duplicates(config["grid"])
    return config


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
        raise ConfigError("config 'data': give either 'colours' or 'top_n_colours', not both (the defaults list "
                          "colours: write 'colours: null' next to 'top_n_colours').")
    if not data.get("top_n_colours") and not data.get("colours"):
        raise ConfigError("config 'data': give 'colours' (a list) or 'top_n_colours' (a number).")


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
        for key in ("paths", "download", "image_table", "viewpoints"):
            if data[key]:
                raise ConfigError(f"config 'data.{key}' is {data[key]} but data.source is 'synthetic', and "
                                  f"'data.{key}' is only read when data.source is 'dvm' (the generated photos "
                                  f"have no image table and no viewpoints): add 'source: dvm' under 'data', or "
                                  f"remove '{key}'.")
        return
    table = data["image_table"]
    if table and not Path(table).exists() and table not in downloaded(data):
        raise ConfigError(f"config 'data.image_table' is {table!r}, which does not exist (paths are relative to "
                          f"{Path.cwd()}); give the path of Image_table.csv or tables_V2.zip, or name 'tables' "
                          f"under 'data.download' and point image_table at {data['download_dir']}/tables_V2.zip.")
    if data["viewpoints"] and not table:
        raise ConfigError(f"config 'data.viewpoints' is {data['viewpoints']} but 'data.image_table' is null: the "
                          f"viewpoints come from DVM-Car's Image_table.csv; set data.image_table, or "
                          f"data.viewpoints: null.")


def downloaded(data: dict, *, images_only: bool = False) -> list[str]:
    """The paths of the archives the download rule fetches (they need not exist before the run); with
    images_only, without the tables archive."""
    from .data.download import ARCHIVES

    return [f"{data['download_dir']}/{ARCHIVES[name].filename}" for name in data["download"]
            if not (images_only and name == "tables")]


def _check_case_duplicates(grid: dict) -> None:
    """Optimizer names are case-insensitive (torch.optim's Adam is adam): two spellings of one optimizer
    would train the same cells twice under two names."""
    seen: dict[str, str] = {}
    for name in grid["optimizers"]:
        if name.lower() in seen:
            raise ConfigError(f"config 'grid.optimizers' lists {seen[name.lower()]!r} and {name!r}, one optimizer "
                              f"(names are case-insensitive): keep one of them.")
        seen[name.lower()] = name


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
    return grid_cells(config["grid"])


def cell_by_name(config: dict, name: str) -> Cell:
    by_name = {c.name: c for c in cells(config)}
    if name not in by_name:
        raise ConfigError(f"unknown cell {name!r}; cells of this grid: {', '.join(by_name)}.")
    return by_name[name]


def read_yaml(path: str | Path) -> dict:
    """One config file as a dict. A file that is missing, empty, not a mapping of sections or not YAML
    (file, line and column) raises ConfigError naming it: Snakemake refuses each of them too, in a
    traceback or without the file's name."""
    sections = ", ".join(load_schema()["properties"])
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (relative to {Path.cwd()}).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty; it holds one or more sections ({sections}), each a "
                          f"mapping of settings.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level is a {type(raw).__name__}, not a mapping of sections "
                          f"({sections}); start each section as 'data:' at column 1.")
    return raw


def _yaml_problem(path: str | Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start and mark and start.line != mark.line:
        problem += f" ({context} that starts on line {start.line + 1})"
    return f"{path}{where}: {problem}"


def read_files(paths) -> dict:
    """Config files merged in order, later ones overriding keys of earlier ones (as Snakemake does)."""
    merged: dict = {}
    for path in paths:
        merged = defaultsmod.merge(merged, read_yaml(path))
    return merged


def load(*paths: str | Path) -> dict:
    """Read config files, merge them in order over the defaults and validate the result."""
    return validate(read_files(paths))


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def add_arguments(parser) -> None:
    parser.add_argument("--record", required=True, help="JSON: {configfiles: [...], config: the resolved config}")
    parser.add_argument("--out", required=True, help="results/config.yaml")


def run(args) -> int:
    """`carcolor record-config`: write the run's resolved config and its config files (results/config.yaml)."""
    import json

    from . import atomic

    record = json.loads(args.record)
    header = ("# The configuration that made this results folder: the config files it was given, merged in\n"
              "# order over experiments/config.yaml, and the resolved result. Written by the workflow.\n")
    atomic.write_text(args.out, header + dump(record))
    return 0


if __name__ == "__main__":
    import sys

    from carcolor.command import main

    sys.exit(main(__spec__.name))
