"""Collect every cell's results into tidy tables (one row per observation) under results/tables/.

The epoch of every run is the one chosen on val (best val macro-F1, the earliest on ties); the
`score_*` columns, per_class.csv and confusion.csv are the score split's at that epoch: the test
split when the data have one, else val (the lab's protocol). comparisons.csv holds the verdicts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

import sys

from .. import atomic, layout
from . import claims, stats

COMMAND = "collect"

KEYS = ["cell", "arch", "optimizer", "seed"]
EPOCH_COLUMNS = KEYS + ["epoch", "split", "loss", "f1_macro", "accuracy", "seconds", "images_per_s",
                        "data_s", "forward_backward_s", "optimizer_s"]
SUMMARY_COLUMNS = KEYS + ["epochs", "params", "macs", "image_size", "batch_size", "lr",
                          "best_val_f1_macro", "best_epoch", "final_val_f1_macro", "final_val_accuracy",
                          "final_val_loss", "train_seconds", "mean_epoch_seconds", "images_per_s",
                          "optimizer_s", "device", "score_split", "score_f1_macro", "score_accuracy", "score_loss",
                          "train_epoch_seconds", "optimizer_step_ms", "val_loss_change_sd", "test_images", "warm_up_s",
                          "pretrained", "hflip", "crop_padding", "label_smoothing", "weight_decay"]
PROVENANCE_COLUMNS = ["cell", "started", "ended", "host", "cpu_model", "cpu_cores", "cpu_usable", "gpu_name",
                      "gpu_memory_gib", "gpu_driver", "python", "torch", "cuda", "cudnn", "platform", "commit",
                      "tracked_changes", "locked", "lock_differences", "inductor_cache", "rerun"]
SPLITS = ("train", "val", "test")  # the order of prepare's splits, for dataset.csv


def _read_run(run_dir: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    missing = [f for f in ("metrics.csv", "summary.json", "predictions.csv") if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}; re-run its cell: "
                                f"snakemake --cores all --forcerun {run_dir / 'train.ipynb'}")
    return (pd.read_csv(run_dir / "metrics.csv"), json.loads((run_dir / "summary.json").read_text()),
            pd.read_csv(run_dir / "predictions.csv"))


def provenance_row(run_dir: Path, cell: str) -> dict:
    """One row of provenance.csv from a cell's provenance.json (a field a run did not record is empty)."""
    path = run_dir / "provenance.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; re-run its cell: make cell CELL={cell}")
    p = json.loads(path.read_text())
    cpu, gpu, locked = p.get("cpu") or {}, p.get("gpu") or {}, p.get("locked")
    differences = (locked or {}).get("differences") or []
    return {"cell": p.get("cell", cell), "started": p.get("started"), "ended": p.get("ended") or p.get("created"),
            "host": p.get("host"), "cpu_model": cpu.get("model"), "cpu_cores": cpu.get("cores"),
            "cpu_usable": cpu.get("usable"), "gpu_name": gpu.get("name"), "gpu_memory_gib": gpu.get("memory_gib"),
            "gpu_driver": gpu.get("driver"), "python": p.get("python"),
            "torch": p.get("torch") or (p.get("packages") or {}).get("torch"), "cuda": p.get("cuda"),
            "cudnn": p.get("cudnn"), "platform": p.get("platform"), "commit": p.get("git_commit"),
            "tracked_changes": p.get("git_tracked_changes"),
            "locked": None if locked is None else bool(locked.get("matches")),
            "lock_differences": "; ".join(f"{d['package']} {d.get('installed')} (locked {d.get('locked')})"
                                          for d in differences),
            "inductor_cache": p.get("inductor_cache"), "rerun": p.get("rerun") or f"make cell CELL={cell}"}


def score_split(metrics: pd.DataFrame) -> str:
    """The split a run is scored on: "test" when its metrics have test rows, else "val"."""
    return "test" if (metrics["split"] == "test").any() else "val"


def optimizer_step_ms(train: pd.DataFrame, train_images: int, batch_size: int) -> float:
    """Mean milliseconds of one optimizer step: the train rows' optimizer_s over every step taken.

    Training drops the last incomplete batch, so an epoch has train_images // batch_size steps.
    NaN when the timing breakdown was off (optimizer_s all NaN): a 0 would read as an instant step.
    """
    steps = train_images // batch_size * len(train)
    total = train["optimizer_s"].sum(min_count=1)
    return float(total / steps * 1000) if steps else float("nan")


def summarise(metrics: pd.DataFrame, info: dict) -> dict:
    """The per-cell summary row from its per-epoch metrics and its summary.json.

    train_seconds and mean_epoch_seconds count training and the val pass of each epoch, as the
    lab's times did; the extra test pass is left out so the protocols compare.
    """
    val = metrics[metrics["split"] == "val"].sort_values("epoch")
    train = metrics[metrics["split"] == "train"].sort_values("epoch")
    best = val.loc[val["f1_macro"].idxmax()]  # the first maximum in epoch order: the earliest on ties
    final = val.iloc[-1]
    scored = score_split(metrics)
    score = metrics[(metrics["split"] == scored) & (metrics["epoch"] == best["epoch"])].iloc[0]
    per_epoch = train["seconds"].to_numpy() + val["seconds"].to_numpy()
    spread = stats.within_run_spread(metrics)["val_loss_change_sd"]
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
        "score_split": scored, "score_f1_macro": float(score["f1_macro"]),
        "score_accuracy": float(score["accuracy"]), "score_loss": float(score["loss"]),
        "train_epoch_seconds": float(train["seconds"].mean()),
        "optimizer_step_ms": optimizer_step_ms(train, info["train_images"], info["batch_size"]),
        "val_loss_change_sd": float(spread.iloc[0]),
        "test_images": int(info.get("test_images", 0)),
        # the warm-up before epoch 1 (compilation, or the CPU's first step), outside every time above
        "warm_up_s": float(info.get("warm_up_s", float("nan"))),
        # the settings the report's method section describes (empty where a run did not record them)
        **{k: (info.get("config") or {}).get(k) for k in ("pretrained", "hflip", "crop_padding", "label_smoothing",
                                                          "weight_decay")},
    }


def _split_of(preds: pd.DataFrame) -> str:
    """The one split predictions.csv holds (files written before it said so hold val)."""
    splits = preds["split"].unique() if "split" in preds else ["val"]
    if len(splits) != 1:
        raise ValueError(f"predictions.csv holds the splits {sorted(splits)}; it must hold the score split only: "
                         f"re-run the cell.")
    return str(splits[0])


def per_class(preds: pd.DataFrame, classes: list[str], keys: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-colour scores and confusion counts of one run's predictions (the score split, chosen epoch)."""
    labels = list(range(len(classes)))
    ids = {**{k: keys[k] for k in KEYS}, "split": _split_of(preds)}
    p, r, f, s = precision_recall_fscore_support(preds["label"], preds["pred"], labels=labels, zero_division=0)
    scores = pd.DataFrame({**ids, "colour": classes, "precision": p, "recall": r, "f1": f, "support": s})
    cm = confusion_matrix(preds["label"], preds["pred"], labels=labels)
    ti, pi = np.meshgrid(labels, labels, indexing="ij")
    confusion = pd.DataFrame({**ids, "true": np.array(classes)[ti.ravel()],
                              "predicted": np.array(classes)[pi.ravel()], "count": cm.ravel()})
    return scores, confusion


def dataset_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images and adverts per colour and split."""
    grouped = manifest.groupby(["colour", "split"], sort=False)
    table = grouped.agg(images=("name", "size"), adverts=("adv_id", "nunique")).reset_index()
    order = {c: i for i, c in enumerate(dict.fromkeys(manifest.sort_values("label")["colour"]))}
    table["_o"] = table["colour"].map(order)
    table["_s"] = table["split"].map({s: i for i, s in enumerate(SPLITS)})
    return table.sort_values(["_o", "_s"]).drop(columns=["_o", "_s"]).reset_index(drop=True)


def _csv(frame: pd.DataFrame):
    return lambda tmp: frame.to_csv(tmp, index=False)


def collect(run_dirs: list[str | Path], prepared_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write epochs.csv, summary.csv, per_class.csv, confusion.csv, dataset.csv, dataset.json,
    comparisons.csv and provenance.csv, all together (none is replaced unless all were written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = Path(prepared_dir)
    info = json.loads((prepared / "dataset.json").read_text())
    classes = info["colours"]
    epochs, summaries, scores, confusions, origins = [], [], [], [], []
    for run_dir in run_dirs:
        metrics, summary, preds = _read_run(Path(run_dir))
        origins.append(provenance_row(Path(run_dir), summary["cell"]))
        epochs.append(metrics)
        summaries.append(summarise(metrics, summary))
        s, c = per_class(preds, classes, summary)
        scores.append(s)
        confusions.append(c)
    manifest = pd.read_csv(prepared / "manifest.csv")
    epochs = pd.concat(epochs, ignore_index=True)[EPOCH_COLUMNS]
    summary = pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)
    compared = claims.comparisons(summary, epochs)
    paths = {name.replace(".", "_").removesuffix("_csv"): out / name for name in layout.TABLE_FILES}
    meta = {k: v for k, v in info.items() if k not in ("decode_images_per_s", "decode_images_per_s_per_worker")}
    meta["n_val_per_colour"] = info["n_val_per_colour"]
    # a cache prepared before the test split existed has none: the lab's protocol
    meta["n_test_per_colour"] = info.get("n_test_per_colour", 0)
    meta["protocol"] = info.get("protocol", "test" if meta["n_test_per_colour"] else "val")
    atomic.write_together({
        paths["epochs"]: _csv(epochs),
        paths["summary"]: _csv(summary),
        paths["comparisons"]: _csv(compared[claims.COLUMNS]),
        paths["per_class"]: _csv(pd.concat(scores, ignore_index=True)),
        paths["confusion"]: _csv(pd.concat(confusions, ignore_index=True)),
        paths["dataset"]: _csv(dataset_table(manifest)),
        paths["provenance"]: _csv(pd.DataFrame(origins, columns=PROVENANCE_COLUMNS)),
        paths["dataset_json"]: lambda tmp: tmp.write_text(json.dumps(meta, indent=2)),
    })
    return paths


def add_arguments(p) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="results/runs/<cell> folders")
    p.add_argument("--prepared", required=True)
    p.add_argument("--out", required=True)


def run(args) -> int:
    """`carcolor collect`: gather every cell's results into tidy tables."""
    paths = collect(args.runs, args.prepared, args.out)
    print(f"[collect] {len(args.runs)} cells -> {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
