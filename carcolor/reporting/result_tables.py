"""The report's tables of the data and the results: images and adverts per colour and split, and per pair
its size, cost and quality, and its times, each as mean ± 95 % half-width over the seeds."""

from __future__ import annotations

import pandas as pd

from . import fmt, pairs

SPLIT_ORDER = ("train", "val", "test")


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
        out[c] = out[c].map(fmt.integer)
    return out


def quality_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per pair: size, cost and quality, each score as mean ± 95 % half-width over seeds."""
    split = pairs.score_split(summary).capitalize()
    rows = []
    for _, r in pairs.pair_means(summary).iterrows():
        rows.append({
            "Model + optimizer": fmt.run_label(r["arch"], r["optimizer"]),
            "Params": fmt.count(r["params"]),
            "MACs/image": fmt.count(r["macs"]),
            f"{split} macro-F1": fmt.band(r["score_f1_macro"], r["score_f1_macro_hw"]),
            f"{split} acc.": fmt.band(r["score_accuracy"], r["score_accuracy_hw"]),
            f"{split} loss": fmt.band(r["score_loss"], r["score_loss_hw"]),
            "Chosen epoch(s)": ", ".join(map(str, r["best_epochs"])),
        })
    return pd.DataFrame(rows)


def _decimals(places: int):
    return lambda x: f"{x:.{places}f}"


def time_table(summary: pd.DataFrame, device: bool | None = None) -> pd.DataFrame:
    """Per pair: training pass per epoch, optimizer step, throughput, time per run and the warm-up, each
    as mean ± half-width; ``device=None`` shows a device column only when the runs used more than one."""
    if device is None:
        device = len(pairs.devices(summary)) > 1
    rows = []
    for _, r in pairs.pair_means(summary).iterrows():
        row = {
            "Model + optimizer": fmt.run_label(r["arch"], r["optimizer"]),
            "Training pass per epoch (s)": fmt.band(r["train_epoch_seconds"], r["train_epoch_seconds_hw"],
                                                    _decimals(2)),
            "Optimizer step (ms)": fmt.band(r["optimizer_step_ms"], r["optimizer_step_ms_hw"], _decimals(1)),
            "Images/s (train)": fmt.band(r["images_per_s"], r["images_per_s_hw"], _decimals(1)),
            "Time per run": fmt.band(r["train_seconds"], r["train_seconds_hw"], fmt.duration),
        }
        if "warm_up_s" in r and pd.notna(r["warm_up_s"]):
            row["Warm-up (s)"] = fmt.band(r["warm_up_s"], r["warm_up_s_hw"], _decimals(2))
        if device:
            row["Device"] = fmt.join(pairs.devices(pairs.rows_of(summary, r["arch"], r["optimizer"])))
        rows.append(row)
    return pd.DataFrame(rows)
