"""Collect every cell's results into tidy tables (one row per observation) under results/tables/.

Nothing here decides the protocol: each run's summary.json says which epoch training chose
(`selected_epoch`: best val macro-F1, the earliest on ties) and which split it scored (`score_split`,
dataset.json's `protocol`: the test split when the data have one, else val, the lab's protocol).
The `score_*` columns, per_class.csv and confusion.csv are that split's at that epoch;
comparisons.csv holds the verdicts.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .. import atomic, layout
from ..data.cache import SPLITS
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
# What summarise reads of a run's summary.json (training records all of it).
RUN_NEEDS = KEYS + ["params", "macs", "image_size", "batch_size", "lr", "train_images", "test_images", "device",
                    "selected_epoch", "score_split", "warm_up_s", "config"]
# What provenance_row reads of a run's provenance.json (carcolor.provenance.collect records all of it).
PROVENANCE_NEEDS = ["cell", "started", "ended", "host", "cpu", "gpu", "python", "torch", "cuda", "cudnn", "platform",
                    "git_commit", "git_tracked_changes", "locked", "inductor_cache", "rerun"]
# What collect reads of the prepared data's dataset.json (preparation records all of it).
DATASET_NEEDS = ["colours", "protocol"]


def recorded(path: Path, needs: list[str], remake: str) -> dict:
    """A JSON record another stage wrote, with every key in `needs`; one line naming the file and the
    command that re-makes it when it lacks some (a results folder made by an older carcolor)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; re-make it: {remake}")
    record = json.loads(path.read_text())
    missing = [key for key in needs if key not in record]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (made by an older carcolor); re-make it: {remake}")
    return record


def _remake_run(run_dir: Path) -> str:
    return f"snakemake --cores all --forcerun {run_dir / 'train.ipynb'}"


def _read_run(run_dir: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    missing = [f for f in ("metrics.csv", "summary.json", "predictions.csv") if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}; re-run its cell: {_remake_run(run_dir)}")
    return (pd.read_csv(run_dir / "metrics.csv"), recorded(run_dir / "summary.json", RUN_NEEDS, _remake_run(run_dir)),
            pd.read_csv(run_dir / "predictions.csv"))


def provenance_row(run_dir: Path) -> dict:
    """One row of provenance.csv from a cell's provenance.json."""
    p = recorded(run_dir / "provenance.json", PROVENANCE_NEEDS, _remake_run(run_dir))
    cpu, gpu, locked = p["cpu"], p["gpu"] or {}, p["locked"]  # no GPU on the CPU; no lock file, no comparison
    differences = (locked or {}).get("differences") or []
    return {"cell": p["cell"], "started": p["started"], "ended": p["ended"],
            "host": p["host"], "cpu_model": cpu["model"], "cpu_cores": cpu["cores"],
            "cpu_usable": cpu["usable"], "gpu_name": gpu.get("name"), "gpu_memory_gib": gpu.get("memory_gib"),
            "gpu_driver": gpu.get("driver"), "python": p["python"], "torch": p["torch"], "cuda": p["cuda"],
            "cudnn": p["cudnn"], "platform": p["platform"], "commit": p["git_commit"],
            "tracked_changes": p["git_tracked_changes"],
            "locked": None if locked is None else bool(locked["matches"]),
            "lock_differences": "; ".join(f"{d['package']} {d['installed']} (locked {d['locked']})"
                                          for d in differences),
            "inductor_cache": p["inductor_cache"], "rerun": p["rerun"]}


def optimizer_step_ms(train: pd.DataFrame, train_images: int, batch_size: int) -> float:
    """Mean milliseconds of one optimizer step: the train rows' optimizer_s over every step taken.

    Training drops the last incomplete batch, so an epoch has train_images // batch_size steps.
    NaN when the timing breakdown was off (optimizer_s all NaN): a 0 would read as an instant step.
    """
    steps = train_images // batch_size * len(train)
    total = train["optimizer_s"].sum(min_count=1)
    return float(total / steps * 1000) if steps else float("nan")


def summarise(metrics: pd.DataFrame, info: dict) -> dict:
    """The per-cell summary row from its per-epoch metrics and its summary.json (RUN_NEEDS).

    The chosen epoch and the score split are the ones training recorded (`selected_epoch`,
    `score_split`): best_epoch is the chosen epoch, best_val_f1_macro its val macro-F1, the score_*
    columns the score split's at it. train_seconds and mean_epoch_seconds count training and the val
    pass of each epoch, as the lab's times did; the extra test pass is left out so the protocols compare.
    """
    val = metrics[metrics["split"] == "val"].sort_values("epoch")
    train = metrics[metrics["split"] == "train"].sort_values("epoch")
    chosen, scored = info["selected_epoch"], info["score_split"]
    best = val[val["epoch"] == chosen].iloc[0]
    final = val.iloc[-1]
    score = metrics[(metrics["split"] == scored) & (metrics["epoch"] == chosen)].iloc[0]
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
        "test_images": int(info["test_images"]),
        # the warm-up before epoch 1 (compilation, or the CPU's first step), outside every time above
        "warm_up_s": float(info["warm_up_s"]),
        # the settings the report's method section describes
        **{k: info["config"][k] for k in ("pretrained", "hflip", "crop_padding", "label_smoothing", "weight_decay")},
    }


def per_class(preds: pd.DataFrame, classes: list[str], info: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-colour scores and confusion counts of one run's predictions.csv: the score split at the chosen
    epoch, as its summary.json (`info`) says."""
    labels = list(range(len(classes)))
    ids = {**{k: info[k] for k in KEYS}, "split": info["score_split"]}
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
    info = recorded(prepared / "dataset.json", DATASET_NEEDS, "snakemake --cores all --forcerun prepare_dataset")
    classes = info["colours"]
    epochs, summaries, scores, confusions, origins = [], [], [], [], []
    for run_dir in run_dirs:
        metrics, summary, preds = _read_run(Path(run_dir))
        origins.append(provenance_row(Path(run_dir)))
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
