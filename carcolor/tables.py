"""Collect every cell's results into tidy tables (one row per observation) under results/tables/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from . import atomic

KEYS = ["cell", "arch", "optimizer", "seed"]
EPOCH_COLUMNS = KEYS + ["epoch", "split", "loss", "f1_macro", "accuracy", "seconds", "images_per_s",
                        "data_s", "forward_backward_s", "optimizer_s"]
SUMMARY_COLUMNS = KEYS + ["epochs", "params", "macs", "image_size", "batch_size", "lr",
                          "best_val_f1_macro", "best_epoch", "final_val_f1_macro", "final_val_accuracy",
                          "final_val_loss", "train_seconds", "mean_epoch_seconds", "images_per_s",
                          "optimizer_s", "device"]


def _read_run(run_dir: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    missing = [f for f in ("metrics.csv", "summary.json", "predictions.csv") if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}; re-run its cell: "
                                f"snakemake --cores all --forcerun {run_dir / 'train.ipynb'}")
    return (pd.read_csv(run_dir / "metrics.csv"), json.loads((run_dir / "summary.json").read_text()),
            pd.read_csv(run_dir / "predictions.csv"))


def summarise(metrics: pd.DataFrame, info: dict) -> dict:
    """The per-cell summary row from its per-epoch metrics and its summary.json."""
    val = metrics[metrics["split"] == "val"].sort_values("epoch")
    train = metrics[metrics["split"] == "train"].sort_values("epoch")
    best = val.loc[val["f1_macro"].idxmax()]
    final = val.iloc[-1]
    per_epoch = train["seconds"].to_numpy() + val["seconds"].to_numpy()
    return {
        **{k: info[k] for k in KEYS},
        "epochs": int(len(val)), "params": info["params"], "macs": info["macs"],
        "image_size": info["image_size"], "batch_size": info["batch_size"], "lr": info["lr"],
        "best_val_f1_macro": float(best["f1_macro"]), "best_epoch": int(best["epoch"]),
        "final_val_f1_macro": float(final["f1_macro"]), "final_val_accuracy": float(final["accuracy"]),
        "final_val_loss": float(final["loss"]),
        "train_seconds": float(per_epoch.sum()), "mean_epoch_seconds": float(per_epoch.mean()),
        "images_per_s": float(info["train_images"] // info["batch_size"] * info["batch_size"] * len(train)
                              / train["seconds"].sum()),
        "optimizer_s": float(train["optimizer_s"].sum()),
        "device": info["device"],
    }


def per_class(preds: pd.DataFrame, classes: list[str], keys: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(preds["label"], preds["pred"], labels=labels, zero_division=0)
    scores = pd.DataFrame({**{k: keys[k] for k in KEYS}, "colour": classes, "precision": p, "recall": r,
                           "f1": f, "support": s})
    cm = confusion_matrix(preds["label"], preds["pred"], labels=labels)
    ti, pi = np.meshgrid(labels, labels, indexing="ij")
    confusion = pd.DataFrame({**{k: keys[k] for k in KEYS}, "true": np.array(classes)[ti.ravel()],
                              "predicted": np.array(classes)[pi.ravel()], "count": cm.ravel()})
    return scores, confusion


def dataset_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images and adverts per colour and split."""
    grouped = manifest.groupby(["colour", "split"], sort=False)
    table = grouped.agg(images=("name", "size"), adverts=("adv_id", "nunique")).reset_index()
    order = {c: i for i, c in enumerate(dict.fromkeys(manifest.sort_values("label")["colour"]))}
    table["_o"] = table["colour"].map(order)
    return table.sort_values(["_o", "split"]).drop(columns="_o").reset_index(drop=True)


def _csv(frame: pd.DataFrame):
    return lambda tmp: frame.to_csv(tmp, index=False)


def collect(run_dirs: list[str | Path], prepared_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write epochs.csv, summary.csv, per_class.csv, confusion.csv, dataset.csv and dataset.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = Path(prepared_dir)
    info = json.loads((prepared / "dataset.json").read_text())
    classes = info["colours"]
    epochs, summaries, scores, confusions = [], [], [], []
    for run_dir in run_dirs:
        metrics, summary, preds = _read_run(Path(run_dir))
        epochs.append(metrics)
        summaries.append(summarise(metrics, summary))
        s, c = per_class(preds, classes, summary)
        scores.append(s)
        confusions.append(c)
    manifest = pd.read_csv(prepared / "manifest.csv")
    paths = {name: out / f"{name}.csv" for name in ("epochs", "summary", "per_class", "confusion", "dataset")}
    paths["dataset_json"] = out / "dataset.json"
    meta = {k: v for k, v in info.items() if k not in ("decode_images_per_s", "decode_images_per_s_per_worker")}
    meta["n_val_per_colour"] = info["n_val_per_colour"]
    atomic.write_together({
        paths["epochs"]: _csv(pd.concat(epochs, ignore_index=True)[EPOCH_COLUMNS]),
        paths["summary"]: _csv(pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)),
        paths["per_class"]: _csv(pd.concat(scores, ignore_index=True)),
        paths["confusion"]: _csv(pd.concat(confusions, ignore_index=True)),
        paths["dataset"]: _csv(dataset_table(manifest)),
        paths["dataset_json"]: lambda tmp: tmp.write_text(json.dumps(meta, indent=2)),
    })
    return paths
