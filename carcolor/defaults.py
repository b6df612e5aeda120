"""The defaults' one home: experiments/config.yaml, every key with a comment above it.

The schema (experiments/config.schema.yaml) says what a value may be and has no defaults; a user's
config is merged over this file the way Snakemake merges --configfile over the Snakefile's own
configfile (sections are merged key by key, other values replaced), so every config is complete.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = REPO / "experiments" / "config.yaml"
SCHEMA_FILE = REPO / "experiments" / "config.schema.yaml"
# How the defaults file is named in commands printed for the user (relative to the checkout).
DEFAULTS_NAME = "experiments/config.yaml"


def defaults() -> dict:
    with open(DEFAULTS_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def merge(base: dict, override: dict) -> dict:
    """base with override's keys on top: dicts merged recursively, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolved(config: dict | None) -> dict:
    """A config with every key: the defaults with `config` merged over them."""
    return merge(defaults(), config or {})
