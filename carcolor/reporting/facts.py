"""The values the report's prose states, computed from the tables: the grid, the training setup the runs
recorded, the data, what its number of seeds can decide, the lab's runs. Each function returns numbers,
names and lists; the sentences around them, and the choice between sentences where a case decides
(one seed or several, synthetic or real data, a test split or not), are in ``report/index.qmd``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..analysis import stats
from . import fmt, pairs


@dataclass(frozen=True)
class Grid:
    """The grid that ran: counts, settings (lists written out as ``0, 1 and 2``), split, devices, time."""

    n_runs: int
    n_pairs: int
    n_seeds: int
    pairs: str
    seeds: str
    epochs: str
    image_size: int
    batch_size: str
    lr: str
    split: str
    devices: list[str]
    total_time: str
    example: str  # a run's name


def grid(summary: pd.DataFrame) -> Grid:
    s = pairs.ordered_summary(summary)
    return Grid(
        n_runs=len(s), n_pairs=len(pairs.pairs(s)), n_seeds=pairs.n_seeds(s),
        pairs=fmt.join(fmt.run_label(a, o) for a, o in pairs.pairs(s)),
        seeds=fmt.join(sorted(int(x) for x in s["seed"].unique())),
        epochs=fmt.join(sorted({int(e) for e in s["epochs"]})),
        image_size=int(s.iloc[0]["image_size"]),
        batch_size=fmt.join(sorted(int(b) for b in s["batch_size"].unique())),
        lr=fmt.join(f"{float(x):g}" for x in sorted(s["lr"].unique())),
        split=pairs.score_split(s), devices=pairs.devices(s), total_time=fmt.duration(s["train_seconds"].sum()),
        example=str(s.iloc[0]["cell"]))


@dataclass(frozen=True)
class Best:
    """The best mean score: the pair(s) reaching it (several when tied at the printed precision), the
    score (mean ± half-width for one pair; the mean alone for a tie, whose pairs' bands differ), and
    the pair whose confusion matrix is shown (of tied pairs, the fastest)."""

    labels: list[str]
    f1: str
    n_seeds: int
    shown: str


def best(summary: pd.DataFrame) -> Best:
    top = pairs.top_pairs(summary)
    means = pairs.pair_means(summary)
    row = pairs.rows_of(means, *top[0]).iloc[0]
    half = row["score_f1_macro_hw"] if len(top) == 1 else math.nan
    return Best(labels=[fmt.run_label(a, o) for a, o in top], f1=fmt.band(row["score_f1_macro"], half),
                n_seeds=int(row["n_seeds"]), shown=fmt.run_label(*pairs.best_pair(summary)))


@dataclass(frozen=True)
class Setup:
    """How every run trained, as the runs recorded it; None where the runs differ or did not record it."""

    pretrained: bool | None
    hflip: bool | None
    crop_padding: int | None


def _setting(summary: pd.DataFrame, key: str) -> str | None:
    """The one value a setting took in every run, lower-cased; None when unrecorded or not the same in all."""
    values = {str(v).strip().lower() for v in summary.get(key, []) if not fmt.missing(v)}
    return values.pop() if len(values) == 1 else None


def _flag(value: str | None) -> bool | None:
    return None if value is None else value in ("true", "1", "1.0", "yes")


def setup(summary: pd.DataFrame) -> Setup:
    padding = _setting(summary, "crop_padding")
    return Setup(pretrained=_flag(_setting(summary, "pretrained")), hflip=_flag(_setting(summary, "hflip")),
                 crop_padding=None if padding is None else int(float(padding)))


@dataclass(frozen=True)
class Data:
    """The images behind the runs (dataset.json and the per-colour table)."""

    synthetic: bool
    source: str
    colours: list[str]
    per_colour: dict[str, int]  # images per colour of each split that has images
    adverts: str
    advert_level_split: bool
    image_size: int
    skipped: str
    skipped_reasons: list[str]  # "3 unreadable", one per reason that skipped any
    archives: str


def data(info: dict, dataset: pd.DataFrame) -> Data:
    skipped = {reason.replace("_", " "): int(n) for reason, n in (info.get("skipped") or {}).items() if int(n)}
    per_colour = {split: int(info[f"n_{split}_per_colour"]) for split in ("train", "val", "test")}
    return Data(
        synthetic=bool(info["synthetic"]), source=str(info["source"]),
        colours=list(info.get("colours") or sorted(dataset["colour"].unique())),
        per_colour={split: n for split, n in per_colour.items() if n},
        adverts=fmt.integer(info["adverts"]), advert_level_split=bool(info["advert_level_split"]),
        image_size=int(info["image_size"]), skipped=fmt.integer(sum(skipped.values())),
        skipped_reasons=[f"{fmt.integer(n)} {reason}" for reason, n in skipped.items()],
        archives=fmt.code_list(Path(str(a)).name for a in info.get("archives") or []))


@dataclass(frozen=True)
class Seeds:
    """What this many seeds per pair can decide: the t factor of a paired interval and how many
    standard deviations of the differences it reaches (t/√n); the F factor of a variance ratio's
    interval, and that factor with 10 seeds per side. NaN with one seed."""

    n: int
    t: float
    reach: float
    f: float
    f10: float


def seeds(summary: pd.DataFrame) -> Seeds:
    n = pairs.n_seeds(summary)
    t = stats.t_quantile(n, pairs.CONFIDENCE)
    return Seeds(n=n, t=t, reach=t / math.sqrt(n), f=stats.variance_ratio_factor(n, n, pairs.CONFIDENCE),
                 f10=stats.variance_ratio_factor(10, 10, pairs.CONFIDENCE))


@dataclass(frozen=True)
class Lab:
    """The lab's runs (report/lab.csv): how many of the grid of networks x optimizers, which it did not run."""

    n_runs: int
    n_grid: int
    not_run: list[str]
    val_images_per_colour: str


def lab(table: pd.DataFrame) -> Lab:
    grid_pairs = [(a, o) for a in pairs.ARCH_ORDER for o in pairs.OPTIMIZER_ORDER]
    val = table["val_images_per_colour"].dropna().unique()
    return Lab(n_runs=len(table), n_grid=len(grid_pairs),
               not_run=[fmt.run_label(a, o) for a, o in grid_pairs if pairs.rows_of(table, a, o).empty],
               val_images_per_colour=fmt.join(fmt.integer(v) for v in val) or fmt.DASH)
