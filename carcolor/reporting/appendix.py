"""The report's appendices: every run with its own numbers, linked to its notebook's page; where, when and
with what code and packages each run ran (provenance.csv), and what all runs shared."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import layout
from . import fmt, pairs


def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every run on its own row (name, chosen epoch, scores, times): the numbers the means and the paired
    comparisons are made of, so a reader can check any of them against the seeds."""
    split = pairs.score_split(summary).capitalize()
    rows = []
    for _, r in pairs.ordered_summary(summary).iterrows():
        rows.append({
            "Cell": fmt.cell_link(r["cell"]),
            "Chosen epoch": str(int(r["best_epoch"])),
            "Best val F1": fmt.f1(r["best_val_f1_macro"]),
            f"{split} F1": fmt.f1(r["score_f1_macro"]),
            f"{split} acc.": fmt.f1(r["score_accuracy"]),
            "Pass/epoch (s)": f"{float(r['train_epoch_seconds']):.2f}",
            "Opt. step (ms)": f"{float(r['optimizer_step_ms']):.1f}",
            "Total": fmt.duration(r["train_seconds"]),
        })
    return pd.DataFrame(rows)


def _present(value) -> bool:
    return not fmt.missing(value) and str(value).strip() != ""


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0", "yes")


def _when(value) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or "–"."""
    if not _present(value):
        return fmt.DASH
    t = pd.Timestamp(value)
    return (t.tz_convert("UTC") if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")


def _described(first: str, r, extras) -> str:
    """``first, <extra>, ...`` with each (column, format) extra the row has."""
    return ", ".join([first] + [write(r[key]) for key, write in extras if _present(r.get(key))])


def _cpu(r) -> str:
    if not _present(r.get("cpu_model")):
        return fmt.DASH
    cores, usable = r.get("cpu_cores"), r.get("cpu_usable")
    count = ""
    if _present(cores):
        count = f", {int(cores)} cores" + (f" ({int(usable)} usable)" if _present(usable) and usable != cores else "")
    return f"{r['cpu_model']}{count}"


def _gpu(r) -> str:
    if not _present(r.get("gpu_name")):
        return "none"
    return _described(str(r["gpu_name"]), r, [("gpu_memory_gib", lambda v: f"{float(v):g} GiB"),
                                             ("gpu_driver", lambda v: f"driver {v}")])


def _software(r) -> str:
    first = f"torch {r['torch']}" if _present(r.get("torch")) else f"torch {fmt.DASH}"
    return _described(first, r, [("cuda", lambda v: f"CUDA {v}"), ("cudnn", lambda v: f"cuDNN {int(float(v))}")])


def _commit(r) -> str:
    if not _present(r.get("commit")):
        return f"{fmt.DASH} (not a git checkout)"
    changed = r.get("tracked_changes")
    state = ("tracked files changed" if _true(changed) else "as committed") if _present(changed) else "?"
    return f"{fmt.code(str(r['commit'])[:10])} ({state})"


def _locked(r) -> str:
    """"yes", "no lock file", or "no" with the differences."""
    locked = r.get("locked")
    if not _present(locked):
        return "no lock file"
    if _true(locked):
        return "yes"
    diff = r.get("lock_differences")
    return "no" + (f": {diff}" if _present(diff) else "")


def provenance_where(provenance: pd.DataFrame) -> pd.DataFrame:
    """Per run: its page (named by its path, which the PDF shows too), when it started and ended (UTC),
    the host, CPU and GPU it ran on."""
    rows = []
    for _, r in provenance.iterrows():
        page = layout.page_path(r["cell"])
        rows.append({"Cell's page": f"[{page}]({page})",
                     "Started (UTC)": _when(r.get("started")), "Ended (UTC)": _when(r.get("ended")),
                     "Host": str(r["host"]) if _present(r.get("host")) else fmt.DASH, "CPU": _cpu(r), "GPU": _gpu(r)})
    return pd.DataFrame(rows)


def provenance_code(provenance: pd.DataFrame) -> pd.DataFrame:
    """Per run: the commit (and whether tracked files differed from it), the software, whether the
    installed packages were the lock file's, and the command that re-runs it."""
    rows = []
    for _, r in provenance.iterrows():
        rows.append({"Cell": fmt.code(r["cell"]), "Commit": _commit(r), "Software": _software(r),
                     "Locked packages": _locked(r), "Re-run with": fmt.code(r["rerun"])})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Shared:
    """What the runs had in common: hosts, commits (10 characters), how many ran with tracked files changed,
    and the lock file: "all" runs used its packages, "none" had one to compare with, else how many differed."""

    n_runs: int
    hosts: list[str]
    commits: list[str]
    n_changed: int
    locks: str
    n_unlocked: int


def shared(provenance: pd.DataFrame) -> Shared:
    locked = [_locked(r) for _, r in provenance.iterrows()]
    unlocked = sum(v.startswith("no") and v != "no lock file" for v in locked)
    locks = "all" if all(v == "yes" for v in locked) else "none" if all(v == "no lock file" for v in locked) \
        else "some"
    return Shared(n_runs=len(provenance), hosts=sorted({str(h) for h in provenance["host"] if _present(h)}),
                  commits=sorted({str(c)[:10] for c in provenance["commit"] if _present(c)}),
                  n_changed=sum(_true(t) for t in provenance["tracked_changes"]), locks=locks, n_unlocked=unlocked)
