"""The comparison page's figure: the two runs' mean curves overlaid, one panel per pair.

The reference is a solid line with filled markers, the candidate a dashed line with hollow ones, so
the two read apart in greyscale too; each carries its 95 % band over seeds. The report's figure
style (carcolor.reporting.plots.apply_style) and page width are used.
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..reporting import plots

RUNS = {"reference": {"color": "#1f6fb4", "linestyle": "-", "marker": "o", "markerfacecolor": "#1f6fb4"},
        "candidate": {"color": "#e3742b", "linestyle": (0, (5, 2.5)), "marker": "s", "markerfacecolor": "white"}}
METRIC_LABELS = {"f1_macro": "validation macro-F1", "loss": "validation loss"}


def overlaid_curves(curves: pd.DataFrame, metric: str, labels: dict[tuple[str, str], str]) -> Figure:
    """One panel per (arch, optimizer) of `curves` (carcolor.reproduction.agreement.curves), titled by
    `labels`, with both runs' means of `metric` per epoch and their bands."""
    plots.apply_style()
    part = curves[curves["metric"] == metric]
    pairs = list(dict.fromkeys(zip(part["arch"], part["optimizer"])))
    ncols = min(2, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(plots.WIDTH, 2.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, (arch, optimizer) in zip(axes, pairs):
        for run, style in RUNS.items():
            rows = part[(part["run"] == run) & (part["arch"] == arch) & (part["optimizer"] == optimizer)]
            rows = rows.sort_values("epoch")
            half = rows["half"].fillna(0)
            # a score lies in [0, 1] and a loss above 0: a band of few seeds is cut there
            low, high = (rows["mean"] - half).clip(lower=0), rows["mean"] + half
            ax.fill_between(rows["epoch"], low, high.clip(upper=1) if metric == "f1_macro" else high,
                            color=style["color"], alpha=0.15, lw=0)
            ax.plot(rows["epoch"], rows["mean"], lw=1.6, markersize=4.5, markeredgecolor=style["color"], **style)
        ax.set_title(labels[(arch, optimizer)])
        ax.set_xticks(sorted(part["epoch"].unique()))
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    for ax in axes[-ncols:]:
        ax.set_xlabel("epoch")
    for ax in axes[::ncols]:
        ax.set_ylabel(METRIC_LABELS[metric])
    handles = [Line2D([], [], lw=1.6, markersize=4.5, markeredgecolor=s["color"], **s) for s in RUNS.values()]
    fig.legend(handles, list(RUNS), loc="outside lower center", ncol=2, fontsize=8.5,
               title="mean over the seeds both runs have, 95 % band", title_fontsize=8)
    return fig
