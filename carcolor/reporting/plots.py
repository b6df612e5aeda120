"""Figures for the report.

Each function takes the tidy results tables and returns a matplotlib
:class:`~matplotlib.figure.Figure` sized for the page width of the PDF
(6.5 in). Figures are built without pyplot's global figure list, so a
notebook cell that ends with one of these calls displays it exactly once.

A grid has several seeds per (architecture, optimizer) pair, so every figure
shows a pair as its mean over seeds with a 95 % band or error bar
(:func:`carcolor.analysis.stats.mean_band`), and the seeds themselves faintly where
they fit. Pairs are told apart without colour too: colour and marker fill =
architecture (filled MobileNetV2, hollow MobileNetV1), line style, marker
shape and hatch = optimizer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import atomic, layout
from ..analysis import stats
from .fmt import run_label
from .pairs import CONFIDENCE, best_pair, n_seeds, pair_means, pairs, rows_of, timing_breakdown
from .results import load_tables

COMMAND = "figures"
WIDTH = 6.5  # inches: the text width of the PDF
ARCH_COLOURS = {"mobilenet_v2": "#1f6fb4", "mobilenet_v1": "#e3742b"}
EXTRA_COLOURS = ["#2c9c5a", "#8c5bb5", "#b5424a", "#6b6b6b"]
ARCH_FILLED = {"mobilenet_v2": True, "mobilenet_v1": False}
OPT_LINESTYLES = {"adam": "-", "adamax": (0, (5, 2.5))}
OPT_MARKERS = {"adam": "o", "adamax": "s"}
OPT_HATCH = {"adam": "", "adamax": "///"}
PART_COLOURS = {
    "data_s": "#a9b8c9", "forward_backward_s": "#4a5a70", "optimizer_s": "#d62728",
    "other_s": "#d4d4d4", "eval_s": "#74a96b",
}
PART_LABELS = {
    "data_s": "input batches", "forward_backward_s": "forward + backward",
    "optimizer_s": "optimizer step", "other_s": "other (training)", "eval_s": "evaluation",
}
PART_HATCH = {"data_s": "", "forward_backward_s": "", "optimizer_s": "xx", "other_s": "..", "eval_s": "\\\\"}


def apply_style() -> None:
    """The seaborn theme used by every figure (paper context, white grid)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1,
                  rc={"axes.titleweight": "bold", "axes.titlesize": 10.5, "legend.frameon": False,
                      "figure.facecolor": "white", "savefig.facecolor": "white"})


def _arch_colour(arch: str) -> str:
    if arch in ARCH_COLOURS:
        return ARCH_COLOURS[arch]
    return EXTRA_COLOURS[sum(map(ord, arch)) % len(EXTRA_COLOURS)]  # stable across processes, unlike hash()


def _style(arch: str, opt: str) -> dict:
    """Line and marker keywords of one pair, readable in greyscale as well as in colour."""
    colour = _arch_colour(arch)
    return {"color": colour, "linestyle": OPT_LINESTYLES.get(opt, ":"), "marker": OPT_MARKERS.get(opt, "^"),
            "markerfacecolor": colour if ARCH_FILLED.get(arch, True) else "white",
            "markeredgecolor": colour}


def _figure(height: float, ncols: int = 1, **kw):
    apply_style()
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


def _pair_legend(fig: Figure, frame: pd.DataFrame, note: str = "") -> None:
    """One legend entry per pair (line style, marker and fill as in the plots), below the axes."""
    handles = [Line2D([], [], markersize=5, lw=1.6, **_style(a, o)) for a, o in pairs(frame)]
    labels = [run_label(a, o) for a, o in pairs(frame)]
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8.5,
                        handlelength=2.8, title=note or None, title_fontsize=8)
    legend.get_title().set_color("#555555")


def epoch_bands(epochs: pd.DataFrame, split: str, y: str) -> pd.DataFrame:
    """Per pair and epoch: the mean of `y` over seeds, its 95 % half-width (NaN with one seed) and n."""
    rows = []
    part = epochs[epochs["split"] == split]
    for (arch, opt, epoch), g in part.groupby(["arch", "optimizer", "epoch"], sort=True):
        mean, half = stats.mean_band(g[y], CONFIDENCE)
        rows.append({"arch": arch, "optimizer": opt, "epoch": epoch, "mean": mean, "half": half,
                     "n": int(g[y].notna().sum())})
    return pd.DataFrame(rows, columns=["arch", "optimizer", "epoch", "mean", "half", "n"])


def _curve_panel(ax, epochs: pd.DataFrame, split: str, y: str) -> None:
    """Each seed faint, then each pair's mean over seeds with its 95 % band."""
    part = epochs[epochs["split"] == split]
    bands = epoch_bands(epochs, split, y)
    for arch, opt in pairs(part):
        style = _style(arch, opt)
        runs = rows_of(part, arch, opt)
        if runs["seed"].nunique() > 1:
            for _, run in runs.groupby("seed"):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"], run[y], color=style["color"], linestyle=style["linestyle"], lw=0.7,
                        alpha=0.3, zorder=1)
        b = rows_of(bands, arch, opt).sort_values("epoch")
        ax.fill_between(b["epoch"], b["mean"] - b["half"], b["mean"] + b["half"], color=style["color"],
                        alpha=0.12, lw=0, zorder=2)
        ax.plot(b["epoch"], b["mean"], lw=1.8, markersize=5, zorder=3, **style)
    epochs_seen = sorted(part["epoch"].unique())
    step = max(1, int(np.ceil(len(epochs_seen) / 12)))
    ax.set_xticks(epochs_seen[::step])
    ax.set_xlabel("epoch")


def _band_note(epochs: pd.DataFrame) -> str:
    n = n_seeds(epochs)
    return "one seed per pair" if n == 1 else f"mean of {n} seeds, 95 % band; thin lines: single seeds"


def loss_curves(epochs: pd.DataFrame) -> Figure:
    """Validation loss per epoch (right) next to the training loss (left), per pair over seeds."""
    fig, axes = _figure(3.2, ncols=2)
    for ax, split, title in zip(axes, ("train", "val"), ("Training loss", "Validation loss")):
        _curve_panel(ax, epochs, split, "loss")
        ax.set_title(title)
        ax.set_ylabel("cross-entropy loss")
    _pair_legend(fig, epochs, _band_note(epochs))
    return fig


def f1_curves(epochs: pd.DataFrame) -> Figure:
    """Validation macro-F1 per epoch, per pair over seeds."""
    fig, ax = _figure(3.2)
    _curve_panel(ax, epochs, "val", "f1_macro")
    ax.set_ylabel("validation macro-F1")
    ax.set_title("Validation macro-F1")
    _pair_legend(fig, epochs, _band_note(epochs))
    return fig


def _pair_labels(c: pd.DataFrame) -> list[str]:
    return [run_label(a, o) for a, o in zip(c["arch"], c["optimizer"])]


def _bar_panel(ax, c: pd.DataFrame, summary: pd.DataFrame, column: str, unit: str) -> None:
    """Horizontal bars of the pair means with 95 % error bars, each seed as a dot, the mean written beside."""
    y = np.arange(len(c))
    means, halves = c[column].to_numpy(dtype=float), c[f"{column}_hw"].to_numpy(dtype=float)
    for i, r in c.reset_index(drop=True).iterrows():
        colour = _arch_colour(r["arch"])
        ax.barh(i, means[i], color=colour, alpha=0.85 if ARCH_FILLED.get(r["arch"], True) else 0.45,
                hatch=OPT_HATCH.get(r["optimizer"], ".."), edgecolor="white", linewidth=0.0, height=0.65)
        seeds = rows_of(summary, r["arch"], r["optimizer"])[column].to_numpy(dtype=float)
        ax.plot(seeds, np.full(len(seeds), i), linestyle="none", marker="o", markersize=3.5,
                markerfacecolor="white", markeredgecolor="black", markeredgewidth=0.7, zorder=4)
    ax.errorbar(means, y, xerr=np.nan_to_num(halves), fmt="none", ecolor="black", elinewidth=1.0, capsize=3,
                zorder=5)
    top = np.nanmax(np.concatenate([means + np.nan_to_num(halves), summary[column].to_numpy(dtype=float)]))
    for i, m in enumerate(means):
        ax.text(top * 1.04, i, f"{m:.1f} {unit}", va="center", fontsize=8)
    ax.set_yticks(y, _pair_labels(c))
    ax.set_xlim(0, top * 1.35)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)


def time_comparison(summary: pd.DataFrame) -> Figure:
    """Training pass per epoch and optimizer step per pair: mean over seeds, 95 % error bar, seeds as dots."""
    c = pair_means(summary)
    fig, axes = _figure(0.5 * len(c) + 1.4, ncols=2, sharey=True)
    _bar_panel(axes[0], c, summary, "train_epoch_seconds", "s")
    axes[0].set_title("Training pass per epoch")
    axes[0].set_xlabel("seconds")
    _bar_panel(axes[1], c, summary, "optimizer_step_ms", "ms")
    axes[1].set_title("Optimizer step")
    axes[1].set_xlabel("milliseconds")
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    return fig


def time_breakdown(epochs: pd.DataFrame) -> Figure:
    """Where an epoch's time goes, per pair: each part's seconds per epoch, averaged over seeds."""
    b = timing_breakdown(epochs)
    parts = list(PART_LABELS)
    per_epoch = b[parts].div(b["epochs"], axis=0).assign(arch=b["arch"], optimizer=b["optimizer"])
    order = pairs(per_epoch)
    means = np.array([rows_of(per_epoch, a, o)[parts].fillna(0).mean().to_numpy() for a, o in order])
    fig, ax = _figure(0.45 * len(order) + 1.5)
    left = np.zeros(len(order))
    for j, part in enumerate(parts):
        ax.barh(np.arange(len(order)), means[:, j], left=left, color=PART_COLOURS[part], label=PART_LABELS[part],
                hatch=PART_HATCH[part], height=0.65, edgecolor="white", linewidth=0.5)
        left += means[:, j]
    ax.set_yticks(np.arange(len(order)), [run_label(a, o) for a, o in order])
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per epoch (mean over seeds)")
    ax.grid(axis="y", visible=False)
    ax.set_xlim(0, left.max() * 1.05)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=8,
               handlelength=1.4, columnspacing=1.0)
    return fig


def confusion_matrix(confusion: pd.DataFrame, arch: str, optimizer: str) -> Figure:
    """Row-normalised confusion matrix (% of each true colour) of one pair, counts pooled over its seeds."""
    df = rows_of(confusion, arch, optimizer)
    if df.empty:
        raise ValueError(f"no confusion rows for {run_label(arch, optimizer)} "
                         f"(arch={arch!r}, optimizer={optimizer!r})")
    order = list(dict.fromkeys(df["true"]))
    m = df.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0)
    m = m.reindex(index=order, columns=order, fill_value=0)
    pct = m.div(m.sum(axis=1).replace(0, np.nan), axis=0) * 100
    n = df["seed"].nunique()
    split = "/".join(sorted(set(map(str, df["split"])))) if "split" in df.columns else "val"
    fig, ax = _figure(5.0)
    sns.heatmap(pct, annot=pct.round(0), fmt=".0f", cmap="Blues", vmin=0, vmax=100, square=True,
                linewidths=0.4, linecolor="white", annot_kws={"fontsize": 7.5},
                cbar_kws={"label": "% of true colour", "shrink": 0.8}, ax=ax)
    ax.set_xlabel("predicted colour")
    ax.set_ylabel("true colour")
    pooled = "one seed" if n == 1 else f"{n} seeds pooled"
    ax.set_title(f"{run_label(arch, optimizer)}, {pooled}, {split} split at the chosen epoch")
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")
    ax.tick_params(axis="y", rotation=0)
    return fig


def per_class_bands(per_class: pd.DataFrame) -> pd.DataFrame:
    """Per pair and colour: mean F1 over seeds and its 95 % half-width (NaN with one seed)."""
    rows = []
    for (arch, opt, colour), g in per_class.groupby(["arch", "optimizer", "colour"], sort=False):
        mean, half = stats.mean_band(g["f1"], CONFIDENCE)
        rows.append({"arch": arch, "optimizer": opt, "colour": colour, "mean": mean, "half": half})
    return pd.DataFrame(rows, columns=["arch", "optimizer", "colour", "mean", "half"])


def per_class_f1(per_class: pd.DataFrame) -> Figure:
    """F1 per colour (rows) for every pair: mean over seeds with a 95 % error bar, pairs side by side."""
    bands = per_class_bands(per_class)
    colours = list(dict.fromkeys(per_class["colour"]))
    order = pairs(bands)
    fig, ax = _figure(0.34 * len(colours) + 1.3)
    offsets = np.linspace(-0.3, 0.3, len(order)) if len(order) > 1 else [0.0]
    for off, (arch, opt) in zip(offsets, order):
        b = rows_of(bands, arch, opt).set_index("colour").reindex(colours)
        y = np.arange(len(colours)) + off
        style = _style(arch, opt)
        ax.errorbar(b["mean"], y, xerr=np.nan_to_num(b["half"].to_numpy(dtype=float)), fmt=style["marker"],
                    color=style["color"], markerfacecolor=style["markerfacecolor"], markersize=4.5,
                    elinewidth=1.0, capsize=2, linestyle="none")
    ax.set_yticks(np.arange(len(colours)), colours)
    for boundary in np.arange(len(colours) - 1) + 0.5:
        ax.axhline(boundary, color="#e3e3e3", lw=0.6)
    ax.grid(axis="y", visible=False)
    ax.invert_yaxis()
    ax.set_xlim(max(0.0, float(np.nanmin(bands["mean"] - bands["half"].fillna(0))) - 0.05), 1.0)
    split = "/".join(sorted(set(map(str, per_class["split"])))) if "split" in per_class.columns else "val"
    ax.set_xlabel(f"F1 on the {split} split at the chosen epoch")
    handles = [Line2D([], [], lw=0, markersize=5, **{k: v for k, v in _style(a, o).items() if k != "linestyle"})
               for a, o in order]
    n = n_seeds(per_class)
    note = "one seed per pair" if n == 1 else f"mean of {n} seeds with 95 % error bars"
    legend = fig.legend(handles, [run_label(a, o) for a, o in order], loc="outside lower center",
                        ncol=min(4, len(order)), fontsize=8.5, title=note, title_fontsize=8)
    legend.get_title().set_color("#555555")
    return fig


# --------------------------------------------------------------------------- as files
# The report's figures as PNG files (results/figures/, Snakemake's report shows them), drawn from the
# same tables by the same functions as the report's.
FIGURES = {
    "loss": lambda t: loss_curves(t.epochs),
    "f1": lambda t: f1_curves(t.epochs),
    "time": lambda t: time_comparison(t.summary),
    "breakdown": lambda t: time_breakdown(t.epochs),
    "per_class": lambda t: per_class_f1(t.per_class),
    "confusion": lambda t: confusion_matrix(t.confusion, *best_pair(t.summary)),
}


def save_figures(results: str | Path, out_dir: str | Path, dpi: int = 150) -> list[Path]:
    """Draw every figure of FIGURES from <results>/tables into <out_dir>/<name>.png, all together."""
    apply_style()
    tables = load_tables(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assert tuple(FIGURES) == layout.FIGURE_NAMES, "every figure the workflow names, and no other"
    figures = {out / f"{name}.png": draw(tables) for name, draw in FIGURES.items()}
    atomic.write_together({path: (lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=dpi))
                           for path, fig in figures.items()})
    return list(figures)


def add_arguments(p) -> None:
    p.add_argument("--results", default="results", help="the folder with tables/ (default: %(default)s)")
    p.add_argument("--out", default="results/figures", help="where <name>.png go (default: %(default)s)")


def run(args) -> int:
    """`carcolor figures`: draw the report's figures as PNG files."""
    for path in save_figures(args.results, args.out):
        print(f"[figures] {path}")
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
