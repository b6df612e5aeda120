"""Figures for the report.

Each function takes the tidy results tables and returns a matplotlib
:class:`~matplotlib.figure.Figure` sized for the page width of the PDF
(6.5 in). Figures are built without pyplot's global figure list, so a
notebook cell that ends with one of these calls displays it exactly once.
Runs are told apart everywhere the same way: colour = architecture,
line style / hatch = optimizer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .narrative import (ARCH_ORDER, OPTIMIZER_ORDER, combos, fmt_duration,
                        ordered_summary, run_label, timing_breakdown)

WIDTH = 6.5  # inches: the text width of the PDF
ARCH_COLOURS = {"mobilenet_v2": "#1f6fb4", "mobilenet_v1": "#e3742b"}
EXTRA_COLOURS = ["#2c9c5a", "#8c5bb5", "#b5424a", "#6b6b6b"]
OPT_DASHES = {"adam": (None, None), "adamax": (5, 2.5)}
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


def apply_style() -> None:
    """The seaborn theme used by every figure (paper context, white grid)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1,
                  rc={"axes.titleweight": "bold", "axes.titlesize": 10.5, "legend.frameon": False,
                      "figure.facecolor": "white", "savefig.facecolor": "white"})


def _arch_colour(arch: str) -> str:
    if arch in ARCH_COLOURS:
        return ARCH_COLOURS[arch]
    return EXTRA_COLOURS[abs(hash(arch)) % len(EXTRA_COLOURS)]


def _figure(height: float, ncols: int = 1, **kw):
    apply_style()
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


def _runs(df: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = {(a, o) for a, o in zip(df["arch"], df["optimizer"])}

    def key(p):
        a, o = p
        return (ARCH_ORDER.index(a) if a in ARCH_ORDER else 9, a,
                OPTIMIZER_ORDER.index(o) if o in OPTIMIZER_ORDER else 9, o)

    return sorted(pairs, key=key)


def _with_run(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["Run"] = [run_label(a, o) for a, o in zip(df["arch"], df["optimizer"])]
    return df


def _run_styles(df: pd.DataFrame):
    runs = _runs(df)
    labels = [run_label(a, o) for a, o in runs]
    palette = {run_label(a, o): _arch_colour(a) for a, o in runs}
    dashes = {run_label(a, o): OPT_DASHES.get(o, (2, 2)) for a, o in runs}
    markers = {run_label(a, o): OPT_MARKERS.get(o, "^") for a, o in runs}
    return labels, palette, dashes, markers


def _run_legend(fig: Figure, df: pd.DataFrame) -> None:
    labels, palette, dashes, markers = _run_styles(df)
    handles = []
    for lab in labels:
        d = dashes[lab]
        h = Line2D([], [], color=palette[lab], marker=markers[lab], markersize=5, lw=1.6,
                   linestyle="-" if d == (None, None) else (0, d))
        handles.append(h)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8.5,
               handlelength=2.8)


def _curve(ax, df: pd.DataFrame, y: str) -> None:
    labels, palette, dashes, markers = _run_styles(df)
    sns.lineplot(data=df, x="epoch", y=y, hue="Run", style="Run", hue_order=labels,
                 style_order=labels, palette=palette, dashes=dashes, markers=markers,
                 markersize=5, linewidth=1.6, errorbar="sd", ax=ax, legend=False)
    epochs = sorted(df["epoch"].unique())
    step = max(1, int(np.ceil(len(epochs) / 12)))
    ax.set_xticks(epochs[::step])
    ax.set_xlabel("epoch")


def loss_curves(epochs: pd.DataFrame) -> Figure:
    """Training and validation loss per epoch for every run."""
    df = _with_run(epochs)
    fig, axes = _figure(3.0, ncols=2, sharey=True)
    for ax, split, title in zip(axes, ("train", "val"), ("Training loss", "Validation loss")):
        part = df[df["split"] == split]
        _curve(ax, part, "loss")
        ax.set_title(title)
        ax.set_ylabel("cross-entropy loss")
    _run_legend(fig, df)
    return fig


def f1_curves(epochs: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Validation macro-F1 per epoch; a star marks each run's best epoch."""
    df = _with_run(epochs[epochs["split"] == "val"])
    fig, ax = _figure(3.0)
    _curve(ax, df, "f1_macro")
    if summary is not None:
        c = combos(summary)
        for _, r in c.iterrows():
            if int(r["n_seeds"]) != 1:
                continue
            row = summary[(summary["arch"] == r["arch"]) & (summary["optimizer"] == r["optimizer"])].iloc[0]
            ax.plot([row["best_epoch"]], [row["best_val_f1_macro"]], marker="*", markersize=12,
                    color=_arch_colour(r["arch"]), markeredgecolor="black", markeredgewidth=0.5,
                    linestyle="none", zorder=5)
    ax.set_ylabel("validation macro-F1")
    ax.set_title("Validation macro-F1 (★ best epoch)")
    _run_legend(fig, df)
    return fig


def _bar_labels(summary: pd.DataFrame):
    s = ordered_summary(summary)
    return s, [f"{run_label(a, o)}\n{c}" for a, o, c in zip(s["arch"], s["optimizer"], s["cell"])]


def _hbars(ax, values, labels, archs, opts, fmt, invert: bool = True) -> None:
    y = np.arange(len(values))
    for i, (v, a, o) in enumerate(zip(values, archs, opts)):
        ax.barh(i, v, color=_arch_colour(a), hatch=OPT_HATCH.get(o, ".."), edgecolor="white",
                linewidth=0.0, height=0.7)
    vmax = max(values) if len(values) else 1
    for i, v in enumerate(values):
        ax.text(v + vmax * 0.02, i, fmt(v), va="center", fontsize=8)
    ax.set_yticks(y, labels)
    if invert:
        ax.invert_yaxis()
    ax.set_xlim(0, vmax * 1.45)
    ax.grid(axis="y", visible=False)


def time_comparison(summary: pd.DataFrame, epochs: pd.DataFrame) -> Figure:
    """Total wall time and mean training time per epoch per cell, relative to the fastest."""
    s, labels = _bar_labels(summary)
    tr = epochs[epochs["split"] == "train"].groupby("cell")["seconds"].mean()
    per_epoch = s["cell"].map(tr).to_numpy(dtype=float)
    total = s["train_seconds"].to_numpy(dtype=float)
    n = len(s)
    fig, axes = _figure(0.45 * n + 1.2, ncols=2, sharey=True)
    tmin, emin = np.nanmin(total), np.nanmin(per_epoch)
    _hbars(axes[0], total, labels, s["arch"], s["optimizer"],
           lambda v: f"{fmt_duration(v)}  ({v / tmin:.2f}×)")
    axes[0].set_title("Total time")
    axes[0].set_xlabel("seconds")
    _hbars(axes[1], per_epoch, labels, s["arch"], s["optimizer"],
           lambda v: f"{v:.1f} s  ({v / emin:.2f}×)", invert=False)
    axes[1].set_title("Training pass per epoch")
    axes[1].set_xlabel("seconds")
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    return fig


def time_breakdown(epochs: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Where the time goes (stacked, summed over epochs) and the optimizer step alone."""
    b = timing_breakdown(epochs)
    order = ordered_summary(summary)["cell"].tolist() if summary is not None else list(b["cell"])
    b = b.set_index("cell").loc[[c for c in order if c in set(b["cell"])]].reset_index()
    labels = [f"{run_label(a, o)}\n{c}" for a, o, c in zip(b["arch"], b["optimizer"], b["cell"])]
    n = len(b)
    apply_style()
    fig = Figure(figsize=(WIDTH, 0.5 * n + 1.5), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, sharey=True, width_ratios=[2.1, 1])
    y = np.arange(n)
    left = np.zeros(n)
    parts = ["data_s", "forward_backward_s", "optimizer_s", "other_s", "eval_s"]
    for part in parts:
        vals = b[part].fillna(0).to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=PART_COLOURS[part], label=PART_LABELS[part], height=0.7,
                edgecolor="white", linewidth=0.5)
        left += vals
    ax.set_yticks(y, labels)
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds, all epochs")
    ax.set_title("Where the time goes")
    ax.grid(axis="y", visible=False)
    ax.set_xlim(0, left.max() * 1.05)
    opt = b["optimizer_s"].to_numpy(dtype=float) / b["epochs"].to_numpy(dtype=float)
    for i, (v, a, o) in enumerate(zip(opt, b["arch"], b["optimizer"])):
        ax2.barh(i, v, color=_arch_colour(a), hatch=OPT_HATCH.get(o, ".."), edgecolor="white",
                 linewidth=0.0, height=0.7)
        ax2.text(v + np.nanmax(opt) * 0.03, i, f"{v:.2f} s", va="center", fontsize=8)
    ax2.set_xlim(0, np.nanmax(opt) * 1.5)
    ax2.set_xlabel("seconds per epoch")
    ax2.set_title("Optimizer step")
    ax2.grid(axis="y", visible=False)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=8,
               handlelength=1.2, columnspacing=1.0)
    return fig


def confusion_matrix(confusion: pd.DataFrame, cell: str) -> Figure:
    """Row-normalised confusion matrix (% of each true colour) of one cell."""
    df = confusion[confusion["cell"] == cell]
    if df.empty:
        raise ValueError(f"no confusion rows for cell {cell!r}")
    order = list(dict.fromkeys(df["true"]))
    m = df.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0)
    m = m.reindex(index=order, columns=order, fill_value=0)
    pct = m.div(m.sum(axis=1).replace(0, np.nan), axis=0) * 100
    row = df.iloc[0]
    fig, ax = _figure(5.0)
    sns.heatmap(pct, annot=pct.round(0), fmt=".0f", cmap="Blues", vmin=0, vmax=100, square=True,
                linewidths=0.4, linecolor="white", annot_kws={"fontsize": 7.5},
                cbar_kws={"label": "% of true colour", "shrink": 0.8}, ax=ax)
    ax.set_xlabel("predicted colour")
    ax.set_ylabel("true colour")
    ax.set_title(f"{run_label(row['arch'], row['optimizer'])} ({cell}), final epoch, val split")
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")
    ax.tick_params(axis="y", rotation=0)
    return fig


def per_class_f1(per_class: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Validation F1 per colour (rows) for every cell (columns)."""
    df = per_class.copy()
    cells = ordered_summary(summary)["cell"].tolist() if summary is not None else list(dict.fromkeys(df["cell"]))
    cells = [c for c in cells if c in set(df["cell"])]
    colours = list(dict.fromkeys(df["colour"]))
    m = df.pivot_table(index="colour", columns="cell", values="f1", aggfunc="mean").reindex(
        index=colours, columns=cells)
    names = {c: run_label(a, o) for c, a, o in zip(df["cell"], df["arch"], df["optimizer"])}
    fig, ax = _figure(0.22 * len(colours) + 1.1)
    sns.heatmap(m, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0, vmax=1, linewidths=0.4,
                linecolor="white", annot_kws={"fontsize": 7.5}, cbar_kws={"label": "F1", "shrink": 0.8},
                ax=ax)
    short = {c: names[c].replace(" + ", "\n+ ") for c in cells}
    ax.set_xticks(np.arange(len(cells)) + 0.5, [short[c] for c in cells], rotation=0, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="y", rotation=0)
    return fig
