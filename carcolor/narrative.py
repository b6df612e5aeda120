"""Numbers and sentences for the report, computed from the tidy results tables.

Every function here takes DataFrames (or the ``dataset.json`` dict) and returns
plain values, DataFrames or Markdown strings; ``report/index.qmd`` only calls them,
so no number in the report is typed by hand.
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

MAKE_COMMAND = "snakemake --cores all"
TABLE_FILES = ("epochs.csv", "summary.csv", "per_class.csv", "confusion.csv", "dataset.csv")
DATASET_INFO = "dataset.json"

ARCH_NAMES = {"mobilenet_v2": "MobileNetV2", "mobilenet_v1": "MobileNetV1"}
OPTIMIZER_NAMES = {"adam": "Adam", "adamax": "Adamax"}
ARCH_ORDER = ("mobilenet_v2", "mobilenet_v1")
OPTIMIZER_ORDER = ("adam", "adamax")

# Differences smaller than these count as ties.
F1_TIE = 0.0005  # best macro-F1 equal to three decimals
TIME_TIE = 0.01  # time ratios within 1 %
STD_TIE = 0.0005  # spread of epoch-to-epoch loss changes


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
    for name in TABLE_FILES:
        path = tables / name
        if not path.is_file():
            raise _missing(path)
        frames[name.removesuffix(".csv")] = pd.read_csv(path)
    info_path = tables / DATASET_INFO
    if not info_path.is_file():
        raise _missing(info_path)
    info = json.loads(info_path.read_text())
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


def run_label(arch: str, optimizer: str) -> str:
    """``MobileNetV2 + Adam``."""
    return f"{arch_name(arch)} + {optimizer_name(optimizer)}"


def fmt_duration(seconds: float) -> str:
    """``h:mm:ss`` (rounded to the second)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    total = int(round(float(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def fmt_seconds(seconds: float) -> str:
    """Short human duration: ``12.3 s``, ``4.1 min``, ``1.25 h``."""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


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


_NUMERIC = re.compile(r"^\**[\d.,:]+")


def md_table(df: pd.DataFrame, caption: str | None = None) -> str:
    """A pipe table (``df.to_markdown``) with an optional ``: caption`` line.

    Columns whose values all start with a number (or are "–") are right-aligned.
    """
    align = []
    for col in df.columns:
        vals = [str(v) for v in df[col] if str(v) not in {"–", ""}]
        align.append("right" if vals and all(_NUMERIC.match(v) for v in vals) else "left")
    text = df.to_markdown(index=False, disable_numparse=True, colalign=align)
    if caption:
        text += f"\n\n: {caption}"
    return text + "\n"


def _join(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def cell_code(cell: str) -> str:
    return f"`{cell}`"


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


def combos(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, optimizer): metrics averaged over seeds, with ``n_seeds``."""
    numeric = ["best_val_f1_macro", "final_val_f1_macro", "final_val_accuracy", "final_val_loss",
               "train_seconds", "mean_epoch_seconds", "images_per_s", "optimizer_s", "params", "macs"]
    numeric = [c for c in numeric if c in summary.columns]
    g = summary.groupby(["arch", "optimizer"], sort=False)
    out = g[numeric].mean()
    out["n_seeds"] = g["seed"].nunique()
    out["cells"] = g["cell"].apply(list)
    out = out.reset_index()
    order = sorted(range(len(out)), key=lambda i: _order_key(out.loc[i, "arch"], out.loc[i, "optimizer"]))
    return out.iloc[order].reset_index(drop=True)


def _combo(summary_combos: pd.DataFrame, arch: str, optimizer: str):
    m = summary_combos[(summary_combos["arch"] == arch) & (summary_combos["optimizer"] == optimizer)]
    return None if m.empty else m.iloc[0]


def best_cell(summary: pd.DataFrame) -> str:
    """The cell with the highest best validation macro-F1 (ties: the faster one)."""
    s = summary.sort_values(["best_val_f1_macro", "train_seconds"], ascending=[False, True], kind="stable")
    return str(s.iloc[0]["cell"])


def devices(summary: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(str(d) for d in summary["device"]))


def seeds_note(row) -> str:
    n = int(row["n_seeds"])
    return f" (mean of {n} seeds)" if n > 1 else ""


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


def grid_facts(summary: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    """Short values for inline use in the prose."""
    s = ordered_summary(summary)
    first = s.iloc[0]
    best = best_cell(summary)
    brow = s[s["cell"] == best].iloc[0]
    n_epochs = sorted({int(e) for e in s["epochs"]})
    return {
        "n_cells": str(len(s)),
        "cells": _join([cell_code(c) for c in s["cell"]]),
        "epochs": _join([str(e) for e in n_epochs]),
        "seeds": _join([str(x) for x in sorted(s["seed"].unique())]),
        "image_size": str(int(first["image_size"])),
        "batch_size": _join([str(int(b)) for b in sorted(s["batch_size"].unique())]),
        "lr": _join([f"{float(x):g}" for x in sorted(s["lr"].unique())]),
        "devices": _join(devices(summary)),
        "best_cell": cell_code(best),
        "best_label": run_label(brow["arch"], brow["optimizer"]),
        "best_f1": fmt_f1(brow["best_val_f1_macro"]),
        "best_epoch": str(int(brow["best_epoch"])),
        "total_time": fmt_duration(s["train_seconds"].sum()),
    }


# --------------------------------------------------------------------------- data


def dataset_table(dataset: pd.DataFrame) -> pd.DataFrame:
    """Images and adverts per colour and split, with a total row."""
    wide = dataset.pivot_table(index="colour", columns="split", values=["images", "adverts"],
                               aggfunc="sum", sort=False)
    out = pd.DataFrame({"Colour": list(wide.index)})
    for split, label in (("train", "Train"), ("val", "Val")):
        for what in ("images", "adverts"):
            col = (what, split)
            vals = wide[col].tolist() if col in wide.columns else [0] * len(wide)
            out[f"{label} {what}"] = vals
    total = {"Colour": "**Total**"}
    for c in out.columns[1:]:
        total[c] = out[c].sum()
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    for c in out.columns[1:]:
        out[c] = out[c].map(fmt_int)
    return out


def dataset_facts(info: dict, dataset: pd.DataFrame) -> str:
    """A bullet list: source, resolution, split, adverts, skipped images."""
    colours = info.get("colours") or sorted(dataset["colour"].unique())
    n_tr = info.get("n_train_per_colour")
    n_va = info.get("n_val_per_colour")
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
        f"- **Images per colour:** {fmt_int(n_tr) if n_tr is not None else '–'} for training, "
        f"{fmt_int(n_va) if n_va is not None else '–'} held out (the *val* split).",
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
    """Per cell: size, cost and validation quality."""
    rows = []
    for _, r in ordered_summary(summary).iterrows():
        rows.append({
            "Cell": cell_code(r["cell"]),
            "Params": fmt_count(r["params"]),
            "MACs/image": fmt_count(r["macs"]),
            "Best val F1 (epoch)": f"{fmt_f1(r['best_val_f1_macro'])} ({int(r['best_epoch'])})",
            "Final val F1": fmt_f1(r["final_val_f1_macro"]),
            "Final val acc.": fmt_f1(r["final_val_accuracy"]),
            "Final val loss": f"{float(r['final_val_loss']):.3f}",
        })
    return pd.DataFrame(rows)


def time_table(summary: pd.DataFrame, device: bool | None = None) -> pd.DataFrame:
    """Per cell: wall time, per-epoch time, throughput, optimizer time, device.

    ``device=None`` shows the device column only when the runs used more than one
    device (:func:`device_caption` names a single device instead).
    """
    if device is None:
        device = len(devices(summary)) > 1
    s = ordered_summary(summary)
    fastest = s["train_seconds"].min()
    rows = []
    for _, r in s.iterrows():
        rows.append({
            "Cell": cell_code(r["cell"]),
            "Total time": fmt_duration(r["train_seconds"]),
            "vs fastest": fmt_ratio(r["train_seconds"] / fastest),
            "Per epoch": fmt_seconds(r["mean_epoch_seconds"]),
            "Images/s (train)": f"{float(r['images_per_s']):.1f}",
            "Optimizer step": fmt_seconds(r["optimizer_s"]),
        })
        if device:
            rows[-1]["Device"] = str(r["device"])
    return pd.DataFrame(rows)


def device_caption(summary: pd.DataFrame) -> str:
    """``All runs on X.`` when there was one device, else ``""``."""
    devs = devices(summary)
    return f"All runs on {devs[0]}." if len(devs) == 1 else ""


def timing_breakdown(epochs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per cell spent in input batches, forward+backward, optimizer step,
    the rest of the training pass, and evaluation (summed over epochs)."""
    tr = epochs[epochs["split"] == "train"]
    va = epochs[epochs["split"] == "val"]
    g = tr.groupby(["cell", "arch", "optimizer"], sort=False)
    out = g[["seconds", "data_s", "forward_backward_s", "optimizer_s"]].sum(min_count=1).reset_index()
    parts = out[["data_s", "forward_backward_s", "optimizer_s"]].fillna(0).sum(axis=1)
    out["other_s"] = (out["seconds"] - parts).clip(lower=0)
    ev = va.groupby("cell")["seconds"].sum()
    out["eval_s"] = out["cell"].map(ev).fillna(0.0)
    out["epochs"] = out["cell"].map(tr.groupby("cell")["epoch"].nunique())
    return out


# --------------------------------------------------------------------------- stability


def stability(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: how often the validation loss rose, and how much it wobbled late.

    ``rises``: epochs (after the first) whose validation loss is higher than the
    previous epoch's; ``transitions``: epochs - 1; ``late_std``: standard deviation
    of the epoch-to-epoch changes of the validation loss over the second half of
    training (NaN with fewer than two changes there).
    """
    rows = []
    va = epochs[epochs["split"] == "val"].sort_values("epoch")
    for (cell, arch, opt), g in va.groupby(["cell", "arch", "optimizer"], sort=False):
        loss = g["loss"].to_numpy(dtype=float)
        diffs = loss[1:] - loss[:-1]
        late = diffs[len(diffs) // 2:]
        rows.append({
            "cell": cell, "arch": arch, "optimizer": opt,
            "rises": int((diffs > 0).sum()),
            "transitions": int(len(diffs)),
            "late_std": float(pd.Series(late).std(ddof=1)) if len(late) >= 2 else float("nan"),
        })
    return pd.DataFrame(rows, columns=["cell", "arch", "optimizer", "rises", "transitions", "late_std"])


STABILITY_DEFINITION = (
    "We call a run *more stable* when its validation loss rose from one epoch to the next "
    "fewer times; with equal counts, when the epoch-to-epoch changes of the validation loss "
    "over the second half of training vary less (smaller standard deviation)."
)


def _stab_combo(stab: pd.DataFrame, arch: str, opt: str):
    m = stab[(stab["arch"] == arch) & (stab["optimizer"] == opt)]
    if m.empty:
        return None
    return {"rises": float(m["rises"].mean()), "transitions": int(m["transitions"].max()),
            "late_std": float(m["late_std"].mean())}


def _fmt_rises(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1f}"


# --------------------------------------------------------------------------- findings


def _not_available(what: str, missing: list[str]) -> str:
    return f"Not available: this grid has no {_join(missing)} run, so {what} cannot be compared."


def _missing_labels(c: pd.DataFrame, pairs: list[tuple[str, str]]) -> list[str]:
    return [run_label(a, o) for a, o in pairs if _combo(c, a, o) is None]


def _optimizer_pair(summary: pd.DataFrame, arch: str, what: str):
    """(Adam row, Adamax row, None) for `arch`, or (None, None, a not-available sentence about `what`)."""
    c = combos(summary)
    missing = _missing_labels(c, [(arch, "adam"), (arch, "adamax")])
    if missing:
        return None, None, _not_available(f"{what} of Adam and Adamax with {arch_name(arch)}", missing)
    return _combo(c, arch, "adam"), _combo(c, arch, "adamax"), None


def stability_sentence(summary: pd.DataFrame, epochs: pd.DataFrame, arch: str) -> str:
    _, _, unavailable = _optimizer_pair(summary, arch, "the stability")
    if unavailable:
        return unavailable
    stab = stability(epochs)
    a, x = _stab_combo(stab, arch, "adam"), _stab_combo(stab, arch, "adamax")
    if a is None or x is None:
        return _not_available(f"the stability of Adam and Adamax with {arch_name(arch)}",
                              ["per-epoch validation"])
    n = x["transitions"]
    detail = (f"validation loss rose in {_fmt_rises(x['rises'])} of {n} epoch-to-epoch steps with Adamax "
              f"and {_fmt_rises(a['rises'])} of {a['transitions']} with Adam")
    stds = ""
    if not (math.isnan(x["late_std"]) or math.isnan(a["late_std"])):
        stds = (f"; the changes over the second half had a standard deviation of "
                f"{x['late_std']:.3f} (Adamax) and {a['late_std']:.3f} (Adam)")
    if x["rises"] != a["rises"]:
        verdict = "more" if x["rises"] < a["rises"] else "less"
    elif stds and abs(x["late_std"] - a["late_std"]) >= STD_TIE:
        verdict = "more" if x["late_std"] < a["late_std"] else "less"
    else:
        verdict = "equal"
    head = (f"With {arch_name(arch)}, Adamax and Adam were equally stable by this measure"
            if verdict == "equal" else f"With {arch_name(arch)}, Adamax was {verdict} stable than Adam")
    return f"{head}: {detail}{stds}."


def accuracy_sentence(summary: pd.DataFrame, arch: str) -> str:
    a, x, unavailable = _optimizer_pair(summary, arch, "the best macro-F1")
    if unavailable:
        return unavailable
    fa, fx = float(a["best_val_f1_macro"]), float(x["best_val_f1_macro"])
    d = fx - fa
    vals = f"{fmt_f1(fx)}{seeds_note(x)} vs {fmt_f1(fa)}{seeds_note(a)}"
    if abs(d) < F1_TIE:
        return (f"With {arch_name(arch)}, Adamax and Adam reached the same best validation "
                f"macro-F1 ({vals}).")
    word = "higher" if d > 0 else "lower"
    return (f"With {arch_name(arch)}, Adamax reached a {word} best validation macro-F1 than Adam: "
            f"{vals}, a difference of {d:+.3f}.")


def _speed_phrase(ratio: float, other: str) -> str:
    """``slower than X`` / ``faster than X`` / ``as fast as X (within 1 %)``."""
    if abs(ratio - 1) < TIME_TIE:
        return f"as fast as {other} (within 1 %)"
    return f"{'slower' if ratio > 1 else 'faster'} than {other}"


def speed_sentence(summary: pd.DataFrame, arch: str) -> str:
    a, x, unavailable = _optimizer_pair(summary, arch, "the training time")
    if unavailable:
        return unavailable
    r = float(x["train_seconds"]) / float(a["train_seconds"])
    text = (f"With {arch_name(arch)}, Adamax was {_speed_phrase(r, 'Adam')} in total: "
            f"{fmt_duration(x['train_seconds'])} vs {fmt_duration(a['train_seconds'])} "
            f"({fmt_ratio(r)} Adam's time)")
    oa, ox = float(a.get("optimizer_s", float("nan"))), float(x.get("optimizer_s", float("nan")))
    if oa > 0 and not math.isnan(ox):
        ro = ox / oa
        if abs(ro - 1) < TIME_TIE:
            step = "took as long as Adam's (within 1 %)"
        else:
            step = f"took {fmt_ratio(ro)} as long as Adam's"
        share = ox / float(x["train_seconds"]) * 100
        text += (f". Its optimizer steps {step} ({fmt_seconds(ox)} vs {fmt_seconds(oa)}), "
                 f"{share:.1f} % of Adamax's total time")
    return text + "."


def architecture_sentence(summary: pd.DataFrame) -> str:
    c = combos(summary)
    missing = _missing_labels(c, [("mobilenet_v1", "adam"), ("mobilenet_v2", "adam")])
    if missing:
        return _not_available("MobileNetV1 and MobileNetV2 (both with Adam)", missing)
    v1, v2 = _combo(c, "mobilenet_v1", "adam"), _combo(c, "mobilenet_v2", "adam")
    d = float(v1["best_val_f1_macro"]) - float(v2["best_val_f1_macro"])
    if abs(d) < F1_TIE:
        acc = "as accurate as"
    else:
        acc = "less accurate than" if d < 0 else "more accurate than"
    r = float(v1["train_seconds"]) / float(v2["train_seconds"])
    speed = _speed_phrase(r, "it")
    tradeoff = (d < 0 and speed.startswith("faster")) or (d > 0 and speed.startswith("slower"))
    joiner = "but" if tradeoff and acc != "as accurate as" else "and"
    return (f"MobileNetV1 + Adam was {acc} MobileNetV2 + Adam (best validation macro-F1 "
            f"{fmt_f1(v1['best_val_f1_macro'])} vs {fmt_f1(v2['best_val_f1_macro'])}, {d:+.3f}) "
            f"{joiner} {speed} ({fmt_duration(v1['train_seconds'])} vs "
            f"{fmt_duration(v2['train_seconds'])}, {fmt_ratio(r)}).")


def _lab_row(lab: pd.DataFrame, arch: str, opt: str):
    m = lab[(lab["arch"] == arch) & (lab["optimizer"] == opt)]
    return None if m.empty else m.iloc[0]


def lab_time_sentence(lab: pd.DataFrame, a: tuple[str, str], b: tuple[str, str]) -> str:
    """``X took h:mm:ss against h:mm:ss for Y (r×).`` from the lab's table."""
    ra, rb = _lab_row(lab, *a), _lab_row(lab, *b)
    if ra is None or rb is None:
        missing = [run_label(*k) for k, r in ((a, ra), (b, rb)) if r is None]
        return f"The lab did not run {_join(missing)}."
    r = float(ra["train_seconds"]) / float(rb["train_seconds"])
    return (f"{run_label(*a)} took {ra['train_time']} against {rb['train_time']} "
            f"for {run_label(*b)} ({fmt_ratio(r)}).")


def _bullets(items: list[tuple[str, str]]) -> str:
    return "\n".join(f"- *{who}:* {text}" for who, text in items)


def findings(summary: pd.DataFrame, epochs: pd.DataFrame, lab: pd.DataFrame | None = None) -> str:
    """The lab's questions, answered from this run's tables (Markdown).

    Each question gets the lab's fact where ``lab`` has one and one sentence per
    architecture from this run; comparisons whose runs are missing say so.
    """
    lab = lab if lab is not None else pd.DataFrame(columns=["arch", "optimizer", "train_time", "train_seconds"])
    archs = [a for a in ARCH_ORDER if a in set(summary["arch"])]
    archs += sorted(set(summary["arch"]) - set(archs))
    run = "This run"
    parts = [
        "**Was Adamax more stable than Adam?** " + STABILITY_DEFINITION + "\n\n"
        + _bullets([(run, stability_sentence(summary, epochs, a)) for a in archs]),
        "**Did Adamax reach a better best validation macro-F1 than Adam?**\n\n"
        + _bullets([(run, accuracy_sentence(summary, a)) for a in archs]),
        "**Was Adamax slower than Adam?**\n\n"
        + _bullets([("Lab", lab_time_sentence(lab, ("mobilenet_v2", "adamax"), ("mobilenet_v2", "adam")))]
                   + [(run, speed_sentence(summary, a)) for a in archs]),
        "**Was MobileNetV1 + Adam less accurate but faster than MobileNetV2 + Adam?**\n\n"
        + _bullets([("Lab", lab_time_sentence(lab, ("mobilenet_v1", "adam"), ("mobilenet_v2", "adam"))),
                    (run, architecture_sentence(summary))]),
    ]
    return "\n\n".join(parts) + "\n"


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


def lab_comparison_table(summary: pd.DataFrame, lab: pd.DataFrame) -> pd.DataFrame:
    """Lab time vs this run's time, each also relative to its own MobileNetV2 + Adam."""
    c = combos(summary)
    keys = {(r["arch"], r["optimizer"]) for _, r in lab.iterrows()} | {(r["arch"], r["optimizer"]) for _, r in c.iterrows()}
    keys = sorted(keys, key=lambda k: _order_key(*k))
    lab_ref = _lab_row(lab, "mobilenet_v2", "adam")
    run_ref = _combo(c, "mobilenet_v2", "adam")
    rows = []
    for arch, opt in keys:
        lr, cr = _lab_row(lab, arch, opt), _combo(c, arch, opt)
        row = {"Model + optimizer": run_label(arch, opt)}
        row["Cell(s)"] = ", ".join(cell_code(x) for x in cr["cells"]) if cr is not None else "not in this run"
        row["Lab time"] = str(lr["train_time"]) if lr is not None else "not run"
        row["Lab, rel."] = (fmt_ratio(float(lr["train_seconds"]) / float(lab_ref["train_seconds"]))
                            if lr is not None and lab_ref is not None else "–")
        row["This run"] = fmt_duration(cr["train_seconds"]) if cr is not None else "–"
        row["This run, rel."] = (fmt_ratio(float(cr["train_seconds"]) / float(run_ref["train_seconds"]))
                                 if cr is not None and run_ref is not None else "–")
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- colophon


def how_made(renderer: str, summary: pd.DataFrame, today: date | None = None) -> str:
    """The "how this report was made" paragraph."""
    today = today or date.today()
    devs = _join([f"*{d}*" for d in devices(summary)])
    return (
        f"Rendered with **{renderer}** on {today.isoformat()}. The experiments ran on {devs}. "
        f"Every number, table and figure in this report is computed when the report is "
        f"rendered from the tables in `results/tables/` (made by `{MAKE_COMMAND}`); the lab's "
        f"times come from `report/lab.csv`.\n"
    )
