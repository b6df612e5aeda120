"""Numbers and sentences for the report, computed from the tidy results tables.

Every function here takes DataFrames (or the ``dataset.json`` dict) and returns
plain values, DataFrames or Markdown strings; ``report/index.qmd`` only calls them,
so no number in the report is typed by hand. Nothing here decides a claim: the
verdicts are read from ``comparisons.csv`` (made by :mod:`carcolor.analysis.claims`), and the
only statistic computed here is the mean ± 95 % half-width of a column over seeds
(:func:`carcolor.analysis.stats.mean_band`), for tables and the summary.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from .. import layout
from ..analysis import claims, stats

MAKE_COMMAND = "snakemake --cores all"

ARCH_NAMES = {"mobilenet_v2": "MobileNetV2", "mobilenet_v1": "MobileNetV1"}
OPTIMIZER_NAMES = {"adam": "Adam", "adamax": "Adamax"}
ARCH_ORDER = ("mobilenet_v2", "mobilenet_v1")
OPTIMIZER_ORDER = ("adam", "adamax")
SPLIT_ORDER = ("train", "val", "test")
CONFIDENCE = 0.95


class MissingResultsError(FileNotFoundError):
    """A results table the report needs does not exist yet."""


@dataclass
class Tables:
    """The results tables of one experiment grid."""

    epochs: pd.DataFrame
    summary: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    dataset: pd.DataFrame
    comparisons: pd.DataFrame
    provenance: pd.DataFrame
    dataset_info: dict
    results_dir: Path


# --------------------------------------------------------------------------- loading


def results_dir(default: str | Path = "../results") -> Path:
    """The results directory: ``$CARCOLOR_RESULTS`` or ``default`` (relative to the cwd)."""
    return Path(os.environ.get("CARCOLOR_RESULTS") or default)


def renderer_name(default: str = "Quarto") -> str:
    """The renderer that is building the report: ``$CARCOLOR_RENDERER`` or ``default``."""
    return os.environ.get("CARCOLOR_RENDERER") or default


def _missing(path: Path) -> MissingResultsError:
    return MissingResultsError(
        f"missing results table {path}: the report is built from results/tables/; "
        f"run `{MAKE_COMMAND}` first (or point CARCOLOR_RESULTS at a results directory "
        "that contains tables/)"
    )


def load_tables(results: str | Path) -> Tables:
    """Read ``<results>/tables/*.csv`` and ``dataset.json``.

    Raises :class:`MissingResultsError` naming the first missing file and the
    command that makes it.
    """
    results = Path(results)
    tables = results / "tables"
    frames = {}
    for name in layout.TABLE_FILES:
        if not (tables / name).is_file():
            raise _missing(tables / name)
    frames = {name.removesuffix(".csv"): pd.read_csv(tables / name) for name in layout.TABLE_FILES
              if name.endswith(".csv")}
    info = json.loads((tables / "dataset.json").read_text())
    return Tables(dataset_info=info, results_dir=results, **frames)


def load_lab(path: str | Path) -> pd.DataFrame:
    """The lab's facts (``report/lab.csv``: arch, optimizer, train_time, train_seconds)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: the lab's reference table (report/lab.csv)")
    return pd.read_csv(path, dtype={"train_time": str})


# --------------------------------------------------------------------------- formatting


def arch_name(arch: str) -> str:
    return ARCH_NAMES.get(arch, arch)


def optimizer_name(optimizer: str) -> str:
    return OPTIMIZER_NAMES.get(optimizer, optimizer)


def level_name(level: str) -> str:
    """An architecture or optimizer by its report name (``adamax`` -> ``Adamax``)."""
    return ARCH_NAMES.get(level) or OPTIMIZER_NAMES.get(level) or level


def run_label(arch: str, optimizer: str) -> str:
    """``MobileNetV2 + Adam``."""
    return f"{arch_name(arch)} + {optimizer_name(optimizer)}"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_duration(seconds: float) -> str:
    """``h:mm:ss`` (rounded to the second)."""
    if _isnan(seconds):
        return "–"
    total = int(round(float(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def fmt_count(n: float) -> str:
    """``2.24 M``, ``55.7 M``, ``1.20 G``."""
    n = float(n)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}"
    return f"{n:.0f}"


def fmt_int(n: float) -> str:
    """``1,234``."""
    return f"{int(round(float(n))):,}"


def fmt_f1(x: float) -> str:
    return f"{float(x):.3f}"


def fmt_ratio(x: float) -> str:
    return f"{float(x):.2f}×"


def fmt_band(mean: float, half: float, fmt=fmt_f1) -> str:
    """``0.812 ± 0.013`` (mean ± 95 % half-width); just the mean when there is no half-width (one seed)."""
    if _isnan(mean):
        return "–"
    return fmt(mean) if _isnan(half) else f"{fmt(mean)} ± {fmt(half)}"


_NUMERIC = re.compile(r"^\**[\d.,:+\-−]+")


def md_table(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A pipe table (``df.to_markdown``) with an optional ``: caption`` line; ``label`` (``tbl-…``)
    gives the table an id, a number under Quarto and ``@tbl-…`` references.

    Columns whose values all start with a number (or are "–") are right-aligned.
    """
    align = []
    for col in df.columns:
        vals = [str(v) for v in df[col] if str(v) not in {"–", ""}]
        align.append("right" if vals and all(_NUMERIC.match(v) for v in vals) else "left")
    text = df.to_markdown(index=False, disable_numparse=True, colalign=align)
    if label and not label.startswith("tbl-"):
        raise ValueError(f"a table label starts with 'tbl-' (Quarto's cross-reference prefix), not {label!r}")
    if caption:
        text += f"\n\n: {caption}" + (f" {{#{label}}}" if label else "")
    return text + "\n"


def _join(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def cell_code(cell: str) -> str:
    return f"`{cell}`"


def cell_link(cell: str) -> str:
    """A run's name linked to its notebook page (relative to the report, so a copied results/report/ keeps it)."""
    return f"[{cell_code(cell)}]({layout.page_path(cell)})"


# --------------------------------------------------------------------------- grid helpers


def _order_key(arch: str, optimizer: str) -> tuple:
    a = ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER)
    o = OPTIMIZER_ORDER.index(optimizer) if optimizer in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER)
    return (a, arch, o, optimizer)


def ordered_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows in report order: MobileNetV2 first, Adam before Adamax, then seed."""
    keys = summary.apply(lambda r: _order_key(r["arch"], r["optimizer"]) + (r["seed"],), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: keys.iloc[i])].reset_index(drop=True)


def cells(summary: pd.DataFrame) -> list[str]:
    """Cell names in report order."""
    return list(ordered_summary(summary)["cell"])


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (arch, optimizer) pairs of a table in report order."""
    found = set(zip(frame["arch"], frame["optimizer"]))
    return sorted(found, key=lambda p: _order_key(*p))


BAND_COLUMNS = ("score_f1_macro", "score_accuracy", "score_loss", "best_val_f1_macro", "final_val_f1_macro",
                "final_val_accuracy", "final_val_loss", "train_seconds", "mean_epoch_seconds",
                "train_epoch_seconds", "optimizer_step_ms", "images_per_s", "optimizer_s", "params", "macs",
                "val_loss_change_sd", "warm_up_s")


def combos(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, optimizer): each number as its mean over seeds (``col``) and the 95 %
    half-width of that mean (``col_hw``, NaN with one seed), with ``n_seeds``, ``seeds``, ``cells``.

    The half-widths only show how far the seeds scatter; claims are decided by the paired
    comparisons in comparisons.csv, never by whether two bands overlap.
    """
    rows = []
    for arch, opt in pairs(summary):
        runs = summary[(summary["arch"] == arch) & (summary["optimizer"] == opt)].sort_values("seed")
        row = {"arch": arch, "optimizer": opt, "n_seeds": int(runs["seed"].nunique()),
               "seeds": [int(s) for s in runs["seed"]], "cells": list(runs["cell"])}
        for col in BAND_COLUMNS:
            if col in runs.columns:
                row[col], row[f"{col}_hw"] = stats.mean_band(runs[col], CONFIDENCE)
        if "best_epoch" in runs.columns:
            row["best_epochs"] = [int(e) for e in runs["best_epoch"]]
        rows.append(row)
    return pd.DataFrame(rows)


def _combo(summary_combos: pd.DataFrame, arch: str, optimizer: str):
    m = summary_combos[(summary_combos["arch"] == arch) & (summary_combos["optimizer"] == optimizer)]
    return None if m.empty else m.iloc[0]


def best_pair(summary: pd.DataFrame) -> tuple[str, str]:
    """The (arch, optimizer) with the highest mean score macro-F1 over seeds (ties: the faster one)."""
    c = combos(summary).sort_values(["score_f1_macro", "train_epoch_seconds"], ascending=[False, True],
                                    kind="stable")
    return str(c.iloc[0]["arch"]), str(c.iloc[0]["optimizer"])


def n_seeds(summary: pd.DataFrame) -> int:
    """Seeds per pair (the fewest, when pairs differ): the n of every paired comparison at most."""
    return int(summary.groupby(["arch", "optimizer"])["seed"].nunique().min())


def score_split(summary: pd.DataFrame) -> str:
    """The split the comparisons score ("test" or "val"), from the summary's ``score_split``."""
    return _join(sorted(set(map(str, summary["score_split"]))))


def devices(summary: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(str(d) for d in summary["device"]))


def _seeds_phrase(n: int) -> str:
    """``3 seeds`` / ``one seed``."""
    return "one seed" if n == 1 else f"{n} seeds"


# --------------------------------------------------------------------------- top matter


def synthetic_note(info: dict) -> str:
    """A prominent blockquote when the images are generated; ``""`` for real data."""
    if not info.get("synthetic", False) and info.get("source", "") != "synthetic":
        return ""
    return (
        "> **Note: synthetic data.** The images behind every number in this report were "
        "*generated* by the pipeline, not taken from the DVM-Car photographs. The results test "
        "that the pipeline works end to end; they say nothing about the claims of the lab or of "
        "the papers cited. Re-run the workflow on the real data to compare with them.\n"
    )


def grid_facts(summary: pd.DataFrame) -> dict:
    """Short values for inline use in the prose (strings; the best score as mean ± half-width)."""
    s = ordered_summary(summary)
    arch, opt = best_pair(summary)
    best = _combo(combos(summary), arch, opt)
    return {
        "n_runs": str(len(s)),
        "n_pairs": str(len(pairs(s))),
        "n_seeds": str(n_seeds(summary)),
        "seeds_phrase": _seeds_phrase(n_seeds(summary)),
        "pairs": _join([run_label(a, o) for a, o in pairs(s)]),
        "epochs": _join([str(e) for e in sorted({int(e) for e in s["epochs"]})]),
        "seeds": _join([str(x) for x in sorted(s["seed"].unique())]),
        "image_size": str(int(s.iloc[0]["image_size"])),
        "batch_size": _join([str(int(b)) for b in sorted(s["batch_size"].unique())]),
        "lr": _join([f"{float(x):g}" for x in sorted(s["lr"].unique())]),
        "devices": _join(devices(summary)),
        "score_split": score_split(summary),
        "best_label": run_label(arch, opt),
        "best_f1": fmt_band(best["score_f1_macro"], best["score_f1_macro_hw"]),
        "best_f1_note": ("one seed, no interval" if int(best["n_seeds"]) == 1
                         else f"mean over {int(best['n_seeds'])} seeds ± 95 % half-width"),
        "total_time": fmt_duration(s["train_seconds"].sum()),
    }


def _setting(summary: pd.DataFrame, key: str):
    """The one value a setting took in every run; None when it was not recorded, "mixed" when it differs."""
    if key not in summary.columns:
        return None
    values = {str(v).strip().lower() for v in summary[key] if not (isinstance(v, float) and math.isnan(v))}
    if not values:
        return None
    return values.pop() if len(values) == 1 else "mixed"


def _truthy(value) -> bool | None:
    return None if value in (None, "mixed") else value in ("true", "1", "1.0", "yes")


def training_setup(summary: pd.DataFrame, info: dict) -> str:
    """The training-setup paragraph, from what the runs recorded: initial weights, augmentation,
    resolution, batch, learning rate, seeds and the protocol."""
    facts = grid_facts(summary)
    pretrained = _truthy(_setting(summary, "pretrained"))
    if pretrained is True:
        start = ("fine-tunes one network, starting from its ImageNet weights (the classifier layer replaced "
                 "by one for the colours),")
    elif pretrained is False:
        start = "trains one network from scratch (random initial weights, no pretraining)"
    else:
        start = "trains one network (its initial weights were not recorded for every run)"
    hflip, padding = _truthy(_setting(summary, "hflip")), _setting(summary, "crop_padding")
    pad = None if padding in (None, "mixed") else int(float(padding))
    aug = []
    if pad:
        aug.append(f"a random crop after padding by {pad} px")
    if hflip:
        aug.append("a random horizontal flip")
    if aug:
        augmentation = "Training images get " + _join(aug) + " each time they are drawn; val and test images none."
    elif hflip is False and pad == 0:
        augmentation = "Training images are not augmented."
    else:
        augmentation = "The augmentation was not recorded for every run."
    size = facts["image_size"]
    test = ("its epoch is chosen on the val split and the test split is scored at it"
            if protocol(info) == "test" else "its epoch is chosen and scored on the val split (the lab's protocol)")
    return (f"Every run {start} with one optimizer for {facts['epochs']} epochs at {size} × {size} pixels, "
            f"batch size {facts['batch_size']}, learning rate {facts['lr']}, seed(s) {facts['seeds']}; {test}. "
            f"{augmentation}\n")


PROTOCOLS = ("test", "val")


def protocol(info: dict) -> str:
    """The protocol that ran: dataset.json's ``protocol``, else "test" when there is a test split."""
    name = info.get("protocol") or ("test" if info.get("n_test_per_colour") else "val")
    if name not in PROTOCOLS:
        raise ValueError(f"dataset.json has protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    return name


def protocol_statement(info: dict) -> str:
    """One paragraph naming the protocol that produced the scores the comparisons use."""
    if protocol(info) == "test":
        n = info.get("n_test_per_colour")
        images = f"{fmt_int(n)} images per colour" if n is not None else "its images"
        return (f"**Protocol: an untouched test split.** Each run's epoch is chosen on the *val* split "
                f"(the epoch with the highest val macro-F1); the *test* split ({images}), which neither "
                f"training nor that choice saw, is scored at that epoch, and every comparison uses those "
                f"test scores.\n")
    n = info.get("n_val_per_colour")
    images = f"{fmt_int(n)} images per colour" if n is not None else "the held-out images"
    return (f"**Protocol: the lab's.** The held-out images ({images}) are evaluated as the *val* split "
            f"after every epoch, the epoch is chosen on them, and the scores compared are read on the same "
            f"images at that epoch, so they are slightly optimistic. There is no separate test split.\n")


# --------------------------------------------------------------------------- data


def _splits(dataset: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(dataset["split"]))
    return [s for s in SPLIT_ORDER if s in present] + [s for s in present if s not in SPLIT_ORDER]


def dataset_table(dataset: pd.DataFrame) -> pd.DataFrame:
    """Images and adverts per colour and split (train, val, and test when there is one), with a total row."""
    wide = dataset.pivot_table(index="colour", columns="split", values=["images", "adverts"],
                               aggfunc="sum", sort=False)
    out = pd.DataFrame({"Colour": list(wide.index)})
    for split in _splits(dataset):
        for what in ("images", "adverts"):
            col = (what, split)
            out[f"{split.capitalize()} {what}"] = wide[col].tolist() if col in wide.columns else [0] * len(wide)
    total = {"Colour": "**Total**", **{c: out[c].sum() for c in out.columns[1:]}}
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    for c in out.columns[1:]:
        out[c] = out[c].map(fmt_int)
    return out


def _per_colour(info: dict) -> str:
    parts = [("n_train_per_colour", "for training"), ("n_val_per_colour", "for validation (*val*)"),
             ("n_test_per_colour", "for the test split")]
    found = [f"{fmt_int(info[k])} {what}" for k, what in parts if info.get(k) is not None]
    return _join(found) if found else "–"


def dataset_facts(info: dict, dataset: pd.DataFrame) -> str:
    """A bullet list: source, resolution, split, adverts, skipped images."""
    colours = info.get("colours") or sorted(dataset["colour"].unique())
    source = "generated (synthetic) images" if info.get("synthetic") else f"DVM-Car ({info.get('source', 'dvm')})"
    skipped = info.get("skipped") or {}
    total_skipped = sum(int(v) for v in skipped.values())
    if total_skipped:
        reasons = _join([f"{fmt_int(v)} {k.replace('_', ' ')}" for k, v in skipped.items() if int(v)])
        skipped_text = f"{fmt_int(total_skipped)} ({reasons})"
    else:
        skipped_text = "none"
    split = "yes" if info.get("advert_level_split") else "no"
    archives = info.get("archives") or []
    lines = [
        f"- **Source:** {source}.",
        f"- **Colours ({len(colours)}):** {', '.join(colours)}.",
        f"- **Images per colour:** {_per_colour(info)}.",
        f"- **Adverts:** {fmt_int(info.get('adverts', dataset['adverts'].sum()))} distinct adverts.",
        f"- **Advert-level split** (all images of one advert on the same side): {split}.",
        f"- **Resolution:** {int(info.get('image_size', 0))} × {int(info.get('image_size', 0))} pixels.",
        f"- **Images skipped:** {skipped_text}.",
    ]
    if archives:
        names = [f"`{Path(str(a)).name}`" for a in archives]
        if len(names) > 6:
            names = names[:5] + [f"{len(names) - 5} more"]
        lines.append(f"- **Read from:** {_join(names)}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- results tables


def quality_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per pair: size, cost and quality, each score as mean ± 95 % half-width over seeds."""
    split = score_split(summary)
    rows = []
    for _, r in combos(summary).iterrows():
        rows.append({
            "Model + optimizer": run_label(r["arch"], r["optimizer"]),
            "Params": fmt_count(r["params"]),
            "MACs/image": fmt_count(r["macs"]),
            f"{split.capitalize()} macro-F1": fmt_band(r["score_f1_macro"], r["score_f1_macro_hw"]),
            f"{split.capitalize()} acc.": fmt_band(r["score_accuracy"], r["score_accuracy_hw"]),
            f"{split.capitalize()} loss": fmt_band(r["score_loss"], r["score_loss_hw"]),
            "Chosen epoch(s)": ", ".join(map(str, r["best_epochs"])),
        })
    return pd.DataFrame(rows)


def time_table(summary: pd.DataFrame, device: bool | None = None) -> pd.DataFrame:
    """Per pair: training pass per epoch, optimizer step, throughput and time per run, mean ± half-width.

    ``device=None`` shows the device column only when the runs used more than one
    device (:func:`device_caption` names a single device instead).
    """
    if device is None:
        device = len(devices(summary)) > 1
    rows = []
    for _, r in combos(summary).iterrows():
        row = {
            "Model + optimizer": run_label(r["arch"], r["optimizer"]),
            "Training pass per epoch (s)": fmt_band(r["train_epoch_seconds"], r["train_epoch_seconds_hw"],
                                                    lambda x: f"{x:.2f}"),
            "Optimizer step (ms)": fmt_band(r["optimizer_step_ms"], r["optimizer_step_ms_hw"], lambda x: f"{x:.1f}"),
            "Images/s (train)": fmt_band(r["images_per_s"], r["images_per_s_hw"], lambda x: f"{x:.1f}"),
            "Time per run": fmt_band(r["train_seconds"], r["train_seconds_hw"], fmt_duration),
        }
        if "warm_up_s" in r and pd.notna(r["warm_up_s"]):
            row["Warm-up (s)"] = fmt_band(r["warm_up_s"], r["warm_up_s_hw"], lambda x: f"{x:.2f}")
        if device:
            runs = summary[(summary["arch"] == r["arch"]) & (summary["optimizer"] == r["optimizer"])]
            row["Device"] = _join(devices(runs))
        rows.append(row)
    return pd.DataFrame(rows)


def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every run on its own row (cell name, chosen epoch, scores, times): the numbers the means and
    the paired comparisons are made of, so a reader can check any of them against the seeds."""
    split = score_split(summary).capitalize()
    rows = []
    for _, r in ordered_summary(summary).iterrows():
        rows.append({
            "Cell": cell_link(r["cell"]),
            "Chosen epoch": str(int(r["best_epoch"])),
            "Best val F1": fmt_f1(r["best_val_f1_macro"]),
            f"{split} F1": fmt_f1(r["score_f1_macro"]),
            f"{split} acc.": fmt_f1(r["score_accuracy"]),
            "Pass/epoch (s)": f"{float(r['train_epoch_seconds']):.2f}",
            "Opt. step (ms)": f"{float(r['optimizer_step_ms']):.1f}",
            "Total": fmt_duration(r["train_seconds"]),
        })
    return pd.DataFrame(rows)


def device_caption(summary: pd.DataFrame) -> str:
    """``All runs on X.`` when there was one device, else ``""``."""
    devs = devices(summary)
    return f"All runs on {devs[0]}." if len(devs) == 1 else ""


def band_caption(summary: pd.DataFrame) -> str:
    """What the ± in the tables means, for their captions."""
    n = n_seeds(summary)
    if n == 1:
        return "One seed per pair: single values, no interval."
    return (f"Mean over {n} seeds ± the half-width of its 95 % t interval "
            f"(t = {stats.t_quantile(n, CONFIDENCE):.2f}); it shows the scatter, the paired comparisons decide.")


def timing_breakdown(epochs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per cell spent in input batches, forward+backward, optimizer step,
    the rest of the training pass, and evaluation (every other split; summed over epochs)."""
    tr = epochs[epochs["split"] == "train"]
    ev = epochs[epochs["split"] != "train"]
    g = tr.groupby(["cell", "arch", "optimizer", "seed"], sort=False)
    out = g[["seconds", "data_s", "forward_backward_s", "optimizer_s"]].sum(min_count=1).reset_index()
    parts = out[["data_s", "forward_backward_s", "optimizer_s"]].fillna(0).sum(axis=1)
    out["other_s"] = (out["seconds"] - parts).clip(lower=0)
    out["eval_s"] = out["cell"].map(ev.groupby("cell")["seconds"].sum()).fillna(0.0)
    out["epochs"] = out["cell"].map(tr.groupby("cell")["epoch"].nunique())
    return out


# --------------------------------------------------------------------------- verdicts (from comparisons.csv)

METRIC_NAMES = {
    "score_f1_macro": "{split} macro-F1",
    "final_val_f1_macro": "final val macro-F1 across seeds",
    "val_loss_change_sd": "sd of late val-loss changes",
    "train_epoch_seconds": "training pass per epoch",
    "optimizer_step_ms": "optimizer step",
}
METRIC_UNITS = {"train_epoch_seconds": " s", "optimizer_step_ms": " ms"}
THRESHOLD = {"difference": "0", "ratio": "1"}
ONE_SEED = "inconclusive: one seed"


def metric_name(metric: str, split: str = "test") -> str:
    """The report's name for a comparisons.csv metric (``score_f1_macro`` -> ``test macro-F1``)."""
    return METRIC_NAMES.get(metric, metric.replace("_", " ")).format(split=split)


def held_fixed_name(held_fixed: str) -> str:
    """``arch=mobilenet_v2`` -> ``With MobileNetV2`` (it starts the verdict sentences)."""
    _, _, level = str(held_fixed).partition("=")
    return f"With {level_name(level)}"


def _is_variance(row) -> bool:
    return "variance" in str(row["method"]).lower()


def contrast(row) -> str:
    """What was compared: ``Adamax − Adam``, ``Adamax / Adam`` or ``var(Adamax) / var(Adam)``."""
    a, b = level_name(row["side_a"]), level_name(row["side_b"])
    if _is_variance(row):
        return f"var({a}) / var({b})"
    return f"{a} − {b}" if row["kind"] == "difference" else f"{a} / {b}"


def _decimals(values, threshold: float, start: int) -> int:
    """Decimals enough that no value other than the threshold prints as the threshold (at most 6)."""
    for d in range(start, 7):
        if all(round(v, d) != threshold or v == threshold for v in values if not _isnan(v)):
            return d
    return 6


def _fmt_number(x: float, row, decimals: int) -> str:
    if _isnan(x):
        return "–"
    if math.isinf(x):
        return "∞"
    if _is_variance(row):
        return f"{x:.3g}"
    if row["kind"] == "ratio":
        return f"{x:.{decimals}f}×"
    return f"{x:+.{decimals}f}".replace("-", "−")


def _number_format(row):
    """A formatter for the estimate and bounds of one row, precise enough to show which side of 0 or 1 they are on."""
    threshold = 0.0 if row["kind"] == "difference" else 1.0
    decimals = _decimals([row["estimate"], row["low"], row["high"]], threshold,
                         2 if row["kind"] == "ratio" else 3)
    return lambda x: _fmt_number(x, row, decimals)


def verdict_label(row) -> str:
    """The verdict as the report prints it: the table's verdict, or ``inconclusive: one seed``."""
    return ONE_SEED if int(row["n_seeds"]) == 1 else str(row["verdict"])


def estimate_text(row) -> str:
    """``+0.012 [+0.004, +0.020]``; the estimate alone when there is no interval."""
    fmt = _number_format(row)
    if _isnan(row["low"]) or _isnan(row["high"]):
        return f"{fmt(row['estimate'])} (no interval)" if not _isnan(row["estimate"]) else "–"
    return f"{fmt(row['estimate'])} [{fmt(row['low'])}, {fmt(row['high'])}]"


def _side_words(expect: str) -> tuple[str, str]:
    """(the claim's side, the other side) of the threshold, in words: ("below 1", "above 1")."""
    t = expect[1:]
    below, above = f"below {t}", f"above {t}"
    return (below, above) if expect[0] == "<" else (above, below)


def _rule_clause(row) -> str:
    """Why the interval gives this verdict, by the report's rule."""
    ours, other = _side_words(row["expect"])
    verdict = str(row["verdict"])
    if verdict == "supported":
        return f"the whole interval lies {ours}, the claim's side"
    if verdict == "contradicted":
        return f"the whole interval lies {other}, against the claim"
    return f"the interval includes {row['expect'][1:]}, so these seeds do not decide"


def _means_clause(row) -> str:
    """``Adamax 0.770, Adam 0.758 (means)`` for differences and ratios; "" for a variance ratio."""
    if _is_variance(row) or _isnan(row["mean_a"]):
        return ""
    unit = METRIC_UNITS.get(row["metric"], "")
    digits = 2 if unit == " s" else (1 if unit == " ms" else 3)
    a, b = level_name(row["side_a"]), level_name(row["side_b"])
    return f" Means: {a} {row['mean_a']:.{digits}f}{unit}, {b} {row['mean_b']:.{digits}f}{unit}."


def _one_seed_body(row) -> str:
    """Why one seed gives no verdict: the reader sees the single value and what is missing to decide."""
    if _is_variance(row):
        return ("A spread across seeds needs at least two seeds on each side; with one seed there is "
                "none to compare, so no verdict is possible.")
    what = "ratio" if row["kind"] == "ratio" else "difference"
    return (f"With one seed {contrast(row)} was {_number_format(row)(row['estimate'])}, but one seed cannot "
            f"show how much that {what} varies from seed to seed, so there is no interval and no verdict.")


def _verdict_head(row, split: str) -> str:
    """What a comparisons row compares: ``With MobileNetV2, test macro-F1, Adamax − Adam``."""
    return f"{held_fixed_name(row['held_fixed'])}, {metric_name(row['metric'], split)}, {contrast(row)}"


def verdict_key(row, split: str = "test") -> str:
    """The start of a verdict sentence, unique per comparisons row: ``With MobileNetV2, test macro-F1, Adamax − Adam: supported``."""
    return f"{_verdict_head(row, split)}: {verdict_label(row)}"


def verdict_sentence(row, split: str = "test") -> str:
    """One comparisons.csv row as Markdown: the verdict, the estimate and its interval, n seeds, the
    method, and which side of 0 (or 1) the interval lies on; with one seed, why there is no verdict."""
    lead = f"*{_verdict_head(row, split)}*: **{verdict_label(row)}**."
    n = int(row["n_seeds"])
    if n == 1:
        return f"{lead} {_one_seed_body(row)}"
    if n == 0 or _isnan(row["low"]):
        return f"{lead} No interval ({row['method']})."
    kind = "ratio of variances" if _is_variance(row) else ("ratio" if row["kind"] == "ratio" else "mean difference")
    fmt = _number_format(row)
    return (f"{lead} {kind.capitalize()} {fmt(row['estimate'])}, 95 % interval [{fmt(row['low'])}, "
            f"{fmt(row['high'])}] over {n} seeds ({row['method']}): {_rule_clause(row)}."
            f"{_means_clause(row)}")


def _rows_by_claim(comparisons: pd.DataFrame):
    """(claim text, its rows) in the order of comparisons.csv."""
    for claim in dict.fromkeys(comparisons["claim"]):
        yield claim, comparisons[comparisons["claim"] == claim]


def unanswered_claims(comparisons: pd.DataFrame) -> list[str]:
    """The lab's claims (claims.CLAIMS) that this grid has no comparison for, e.g. no MobileNetV1 run."""
    answered = set(comparisons["claim_id"])
    return list(dict.fromkeys(c.claim for c in claims.CLAIMS if c.claim_id not in answered))


def verdicts(comparisons: pd.DataFrame, split: str = "test") -> str:
    """Every lab claim with one verdict sentence per comparisons.csv row (Markdown)."""
    parts = []
    for claim, rows in _rows_by_claim(comparisons):
        bullets = "\n".join(f"- {verdict_sentence(r, split)}" for _, r in rows.iterrows())
        parts.append(f"**{claim}.**\n\n{bullets}")
    missing = unanswered_claims(comparisons)
    if missing:
        parts.append(f"Not answered by this grid, which lacks one side of each: {_join(missing)}.")
    return "\n\n".join(parts) + "\n"


VERDICT_TABLE_NOTE = (
    "Differences and ratios are taken in the order the claim names its sides (Adamax − Adam, "
    "MobileNetV1 / MobileNetV2); across seeds, the ratio of the two variances."
)


def verdict_table(comparisons: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per comparison: claim, metric, held fixed, n seeds, estimate [low, high], verdict.

    A claim's text is printed on its first row only, so the rows read as one group per claim.
    """
    rows = []
    previous = None
    for _, r in comparisons.iterrows():
        rows.append({
            "Claim": r["claim"] if r["claim"] != previous else "",
            "Metric": metric_name(r["metric"], split),
            "Held fixed": level_name(str(r["held_fixed"]).partition("=")[2]),
            "Seeds": str(int(r["n_seeds"])),
            "Estimate [95 % CI]": estimate_text(r),
            "Verdict": verdict_label(r),
        })
        previous = r["claim"]
    return pd.DataFrame(rows, columns=["Claim", "Metric", "Held fixed", "Seeds", "Estimate [95 % CI]", "Verdict"])


def verdict_summary(comparisons: pd.DataFrame) -> str:
    """``Of the 14 comparisons, 9 are supported, 1 contradicted and 4 inconclusive.``"""
    counts = claims.verdict_counts(comparisons)
    total = sum(counts.values())
    if total == 0:
        return "This grid has no two pairs of runs that a lab claim compares, so no claim is decided."
    if int(comparisons["n_seeds"].max()) <= 1:
        return f"All {total} comparisons are inconclusive: with one seed there is no interval to decide by."
    verb = "is" if counts["supported"] == 1 else "are"
    return (f"Of the {total} comparisons, {counts['supported']} {verb} supported, {counts['contradicted']} "
            f"contradicted and {counts['inconclusive']} inconclusive.")


# --------------------------------------------------------------------------- method text


def evidence_rule(summary: pd.DataFrame) -> str:
    """How a claim is decided, with this grid's number of seeds and the t factor it implies (Markdown)."""
    n = n_seeds(summary)
    rule = ("A claim is **supported** when the whole 95 % interval lies on the claim's side of 0 (or of "
            "ratio 1), **contradicted** when it lies entirely on the other side, and **inconclusive** "
            "otherwise.")
    pairing = ("Every claim is decided from paired comparisons over seeds: a seed fixes the data split, so "
               "two runs with the same seed differ only in what the claim is about (and in initialisation, "
               "batch order and augmentation, which the seeds vary). Differences of scores get a Student t "
               "interval on the paired differences; ratios of times a t interval on the log ratios, "
               "reported as a geometric-mean ratio; the spread across seeds an F interval on the ratio of "
               "variances. From 20 seeds on a bootstrap replaces the t interval.")
    if n == 1:
        return (f"{pairing} {rule} This grid has **one seed** per pair: there is no interval, and every "
                f"verdict is *{ONE_SEED}*; run more seeds (`grid.seeds` in the config) to decide.\n")
    t = stats.t_quantile(n, CONFIDENCE)
    return (f"{pairing} {rule} This grid has **{n} seeds** per pair, so the t factor is "
            f"$t_{{0.975,\\,{n - 1}}}$ = {t:.2f}: an interval reaches {t / math.sqrt(n):.2f} standard deviations of the "
            f"paired differences on either side of their mean, and only large, consistent effects are "
            f"decided.\n")


def stability_text(summary: pd.DataFrame) -> str:
    """The two meanings of "more stable" and what each can and cannot show with this many seeds."""
    n = n_seeds(summary)
    within = ("*Within a run*: how much the val loss jumps from epoch to epoch late in training, measured as "
              "the standard deviation of its epoch-to-epoch changes over the second half of the epochs, one "
              "number per run, compared paired (Adamax − Adam).")
    across = ("*Across seeds*: how much the final val macro-F1 varies from one seed to the next, compared as "
              "the ratio of the two variances, var(Adamax) / var(Adam), with an F interval.")
    if n == 1:
        limits = ("With one seed neither can be decided: the within-run spread is measured for each run but "
                  "one paired difference has no interval, and a spread across seeds needs at least two seeds.")
    else:
        t, f = stats.t_quantile(n, CONFIDENCE), stats.variance_ratio_factor(n, n, CONFIDENCE)
        f10 = stats.variance_ratio_factor(10, 10, CONFIDENCE)
        limits = (f"With {n} seeds the first is decided only when Adamax's late wobble differs from Adam's "
                  f"by far more than that difference varies between seeds (t = {t:.2f}); it says nothing "
                  f"about why. The second is almost out of reach: the F interval of a variance ratio spans a "
                  f"factor of {f:.0f} each way around its estimate, so only a ratio below 1/{f:.0f} or above "
                  f"{f:.0f} could be decided (with 10 seeds per side the factor would still be {f10:.1f}).")
    return f"**Two meanings of \"more stable\".** {within} {across} {limits}\n"


# --------------------------------------------------------------------------- time and the lab

TIME_METRICS = ("train_epoch_seconds", "optimizer_step_ms")


def _lab_row(lab: pd.DataFrame, arch: str, opt: str):
    m = lab[(lab["arch"] == arch) & (lab["optimizer"] == opt)]
    return None if m.empty else m.iloc[0]


def _run_keys(row, side: str) -> tuple[str, str]:
    """(arch, optimizer) of one side of a comparisons row: its level plus the level held fixed."""
    factor, _, level = str(row["held_fixed"]).partition("=")
    return (level, row[side]) if factor == "arch" else (row[side], level)


def lab_ratio_text(lab: pd.DataFrame, row) -> str:
    """The lab's total training times for the two sides of a row, as a ratio: ``1:54:34 / 1:38:34 = 1.16×``."""
    a, b = _run_keys(row, "side_a"), _run_keys(row, "side_b")
    ra, rb = _lab_row(lab, *a), _lab_row(lab, *b)
    if ra is None or rb is None:
        return f"the lab did not run {_join([run_label(*k) for k, r in ((a, ra), (b, rb)) if r is None])}"
    ratio = float(ra["train_seconds"]) / float(rb["train_seconds"])
    return f"{ra['train_time']} / {rb['train_time']} = {fmt_ratio(ratio)}"


TIME_CAVEAT = (
    "Times are compared paired, like the scores: per seed, the ratio of the two runs' mean training pass "
    "per epoch and of their mean optimizer step, summarised as a geometric mean with a 95 % interval from "
    "the t interval of the log ratios. The runs shared a machine with other work, which slows some epochs "
    "and not others; the interval shows how much the paired ratio varied from seed to seed under that "
    "noise, so a supported ratio means the difference showed up in every seed on this machine, not that it "
    "has this size elsewhere. The lab timed whole trainings on its own hardware and data size, so only its "
    "ratios can be set beside ours."
)


def timing_text(comparisons: pd.DataFrame, lab: pd.DataFrame) -> str:
    """The caveat on timing, then per time comparison: this run's paired ratios next to the lab's ratio."""
    rows = comparisons[comparisons["metric"].isin(TIME_METRICS)]
    bullets = []
    for (claim_id, held), group in rows.groupby(["claim_id", "held_fixed"], sort=False):
        first = group.iloc[0]
        n = int(group["n_seeds"].max())
        if n == 1:
            ours = "; ".join(f"{metric_name(r['metric'])} {_number_format(r)(r['estimate'])}"
                             for _, r in group.iterrows()) + f" (one seed: no interval, so {ONE_SEED})"
        else:
            ours = "; ".join(f"{metric_name(r['metric'])} {estimate_text(r)}, {verdict_label(r)}"
                             for _, r in group.iterrows()) + f" (over {_seeds_phrase(n)})"
        bullets.append(f"- *{held_fixed_name(held)}, {contrast(first)}:* {ours}. "
                       f"Lab, total training time: {lab_ratio_text(lab, first)}.")
    if not bullets:
        return TIME_CAVEAT + "\n\nThis grid has no pair of runs whose times a lab claim compares.\n"
    return TIME_CAVEAT + "\n\n" + "\n".join(bullets) + "\n"


def lab_facts(lab: pd.DataFrame) -> dict:
    """Short values about the lab for inline use: runs, combinations not run,
    held-out images per colour."""
    grid = [(a, o) for a in ARCH_ORDER for o in OPTIMIZER_ORDER]
    not_run = [run_label(a, o) for a, o in grid if _lab_row(lab, a, o) is None]
    val = lab["val_images_per_colour"].dropna().unique() if "val_images_per_colour" in lab else []
    return {
        "n_runs": str(len(lab)),
        "n_grid": str(len(grid)),
        "not_run": _join(not_run) if not_run else "none",
        "val_images_per_colour": _join([fmt_int(v) for v in val]) if len(val) else "–",
    }


# --------------------------------------------------------------------------- colophon


def how_made(renderer: str, summary: pd.DataFrame, today: date | None = None) -> str:
    """The "how this report was made" paragraph."""
    today = today or date.today()
    devs = _join([f"*{d}*" for d in devices(summary)])
    return (
        f"Rendered with **{renderer}** on {today.isoformat()}. The experiments ran on {devs}. "
        f"Every number, table and figure in this report is computed when the report is "
        f"rendered from the tables in `results/tables/` (made by `{MAKE_COMMAND}`); the verdicts are "
        f"read from `results/tables/comparisons.csv`, and the lab's times come from `report/lab.csv`.\n"
    )


# --------------------------------------------------------------------------- provenance


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def _when(value) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or "–"."""
    if not _present(value):
        return "–"
    t = pd.Timestamp(value)
    t = t.tz_convert("UTC") if t.tzinfo else t
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _cpu(r) -> str:
    if not _present(r.get("cpu_model")):
        return "–"
    cores, usable = r.get("cpu_cores"), r.get("cpu_usable")
    count = ""
    if _present(cores):
        count = f", {int(cores)} cores" + (f" ({int(usable)} usable)" if _present(usable) and usable != cores else "")
    return f"{r['cpu_model']}{count}"


def _described(first: str, r, extras) -> str:
    """``first, <extra>, ...`` with each (column, format) extra the row has."""
    return ", ".join([first] + [fmt(r[key]) for key, fmt in extras if _present(r.get(key))])


def _gpu(r) -> str:
    if not _present(r.get("gpu_name")):
        return "none"
    return _described(str(r["gpu_name"]), r, [("gpu_memory_gib", lambda v: f"{float(v):g} GiB"),
                                             ("gpu_driver", lambda v: f"driver {v}")])


def _software(r) -> str:
    first = f"torch {r['torch']}" if _present(r.get("torch")) else "torch –"
    return _described(first, r, [("cuda", lambda v: f"CUDA {v}"), ("cudnn", lambda v: f"cuDNN {int(float(v))}")])


def _commit(r) -> str:
    if not _present(r.get("commit")):
        return "– (not a git checkout)"
    changed = r.get("tracked_changes")
    state = ("tracked files changed" if _truthy(str(changed).lower()) else "as committed") if _present(changed) else "?"
    return f"`{str(r['commit'])[:10]}` ({state})"


def _locked(r) -> str:
    locked = r.get("locked")
    if not _present(locked):
        return "no lock file"
    if _truthy(str(locked).lower()):
        return "yes"
    diff = r.get("lock_differences")
    return "no" + (f": {diff}" if _present(diff) else "")


def provenance_where(provenance: pd.DataFrame) -> pd.DataFrame:
    """Per run: its page (named by its path, which the PDF shows too), when it started and ended (UTC), the host, CPU and GPU it ran on."""
    rows = []
    for _, r in provenance.iterrows():
        page = layout.page_path(r["cell"])
        rows.append({"Cell's page": f"[{page}]({page})",
                     "Started (UTC)": _when(r.get("started")), "Ended (UTC)": _when(r.get("ended")),
                     "Host": str(r["host"]) if _present(r.get("host")) else "–", "CPU": _cpu(r), "GPU": _gpu(r)})
    return pd.DataFrame(rows)


def provenance_code(provenance: pd.DataFrame) -> pd.DataFrame:
    """Per run: the commit (and whether tracked files differed from it), the software, whether the
    installed packages were the lock file's, and the command that re-runs it."""
    rows = []
    for _, r in provenance.iterrows():
        rows.append({"Cell": cell_code(r["cell"]), "Commit": _commit(r), "Software": _software(r),
                     "Locked packages": _locked(r), "Re-run with": f"`{r['rerun']}`"})
    return pd.DataFrame(rows)


def provenance_text(provenance: pd.DataFrame, summary: pd.DataFrame) -> str:
    """How to trace a number to its run, and what all runs shared (Markdown)."""
    n = len(provenance)
    hosts = sorted({str(h) for h in provenance["host"] if _present(h)})
    commits = sorted({str(c)[:10] for c in provenance["commit"] if _present(c)})
    changed = [c for c, t in zip(provenance["cell"], provenance["tracked_changes"]) if _truthy(str(t).lower())]
    locked = [_locked(r) for _, r in provenance.iterrows()]
    text = (f"Every number in this report comes from one of the {n} runs below. Each run's name links to "
            f"its executed training notebook, exported as a self-contained page in `cells/` next to this "
            f"report (its log, curves and results as they were computed); the same notebook is "
            f"`results/runs/<cell>/train.ipynb`, and `results/tables/provenance.csv` holds what these "
            f"tables show. ")
    text += (f"The runs ran on {_join([f'`{h}`' for h in hosts]) or 'an unrecorded host'}"
             + (f", from commit {_join([f'`{c}`' for c in commits])}" if commits else ", outside a git checkout"))
    text += (f"; tracked files differed from the commit in {len(changed)} of them" if changed
             else "; no tracked file differed from the commit" if commits else "")
    if all(v == "yes" for v in locked):
        text += ", and every run used the packages of `requirements.lock`."
    elif all(v == "no lock file" for v in locked):
        text += "; there was no lock file to compare the installed packages with."
    else:
        text += f"; {sum(v.startswith('no') and v != 'no lock file' for v in locked)} of them used packages " \
                f"that differ from `requirements.lock` (listed below)."
    return text + " Times are UTC; a run resumed after an interruption counts from its first start.\n"
