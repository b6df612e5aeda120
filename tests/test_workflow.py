"""The real Snakefile on the tiny smoke config: lint, dry run, full run, no-op re-run, one-cell re-run,
and the dry-run plan after each kind of change (Snakemake must see every input of every job).

One full run (the session fixture `smoke_run`) feeds all checks of the outputs: tables, notebooks, report.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from carcolor.training.train import RETRAIN
from tests.conftest import SMOKE
from tests.flow import CELLS, copy_checkout, planned, snakemake, snakemake_cmd

pytestmark = [pytest.mark.workflow, SMOKE]
AFTER_TABLES = {"collect_tables": 1, "figures": 1, "render_report": 1}
TRAIN_ALL = {"train_cell": len(CELLS), "cell_page": len(CELLS), **AFTER_TABLES}


def test_lint_reports_nothing_but_conda_environments(repo, tmp_path, tool_env):
    out = snakemake(repo, tmp_path, "--lint", env=tool_env, check=False)
    lints = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("    * ")]
    assert lints, "the linter printed nothing: was it run?"
    assert set(lints) == {"* Specify a conda environment or container for each rule.:"}, lints


def test_dry_run_lists_every_stage(repo, tmp_path, tool_env):
    out = snakemake(repo, tmp_path, "-n", env=tool_env)
    assert planned(out) == {"generate_synthetic": 1, "prepare_dataset": 1, "record_config": 1, **TRAIN_ALL}, \
        out.stdout[-3000:]


def test_bad_config_fails_in_one_line_before_anything_runs(repo, tmp_path, tool_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  optimizers: [adam, adamx]\n")
    out = snakemake(repo, tmp_path, env=tool_env, config=bad, check=False)
    assert out.returncode != 0
    lines = [l for l in out.stderr.splitlines() if l.startswith("carcolor:")]
    assert len(lines) == 1 and "'adamx'" in lines[0] and "adamax" in lines[0], out.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_every_cell_has_its_executed_notebook_and_results(smoke_run):
    for cell in CELLS:
        folder = smoke_run / "results" / "runs" / cell
        nb = nbformat.read(folder / "train.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        arch, optimizer, seed = cell.split("-")
        assert injected and f'arch = "{arch}"\noptimizer = "{optimizer}"\nseed = {seed[1:]}\n' in injected[0].source
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        for name in ("metrics.csv", "predictions.csv", "summary.json", "checkpoint.pt", "provenance.json"):
            assert (folder / name).stat().st_size > 0
        assert json.loads((folder / "summary.json").read_text())["threads"] == 1  # train.threads, not --cores
        log = (smoke_run / "results" / "logs" / "train_cell" / f"{cell}.log").read_text()
        assert f"[{cell}] epoch 3/3" in log  # the per-epoch progress line


def test_tidy_tables(smoke_run):
    tables = smoke_run / "results" / "tables"
    epochs = pd.read_csv(tables / "epochs.csv")
    for col in ["arch", "optimizer", "seed", "epoch", "split", "loss", "f1_macro", "accuracy", "seconds",
                "images_per_s"]:
        assert col in epochs.columns
    assert len(epochs) == len(CELLS) * 3 * 3  # cells x epochs x splits
    assert set(epochs["cell"]) == set(CELLS) and set(epochs["split"]) == {"train", "val", "test"}
    assert epochs[["loss", "f1_macro", "accuracy", "seconds", "images_per_s"]].notna().all().all()
    summary = pd.read_csv(tables / "summary.csv")
    assert list(summary["cell"]) == CELLS
    for col in ["best_val_f1_macro", "final_val_f1_macro", "final_val_loss", "train_seconds",
                "mean_epoch_seconds", "images_per_s", "params", "device", "warm_up_s"]:
        assert summary[col].notna().all(), col
    assert (summary["params"] > 1e6).all()
    per_class = pd.read_csv(tables / "per_class.csv")
    assert len(per_class) == len(CELLS) * 4
    confusion = pd.read_csv(tables / "confusion.csv")
    assert confusion.groupby("cell")["count"].sum().eq(4 * 6).all()  # 4 colours x 6 test images
    assert set(confusion["split"]) == {"test"} and set(summary["score_split"]) == {"test"}
    dataset = pd.read_csv(tables / "dataset.csv")
    assert dataset.groupby("split")["images"].sum().to_dict() == {"train": 64, "val": 24, "test": 24}
    info = json.loads((tables / "dataset.json").read_text())
    assert info["synthetic"] is True and info["advert_level_split"] is True and info["protocol"] == "test"


def test_comparisons_can_be_recomputed_from_the_summary(smoke_run):
    """Every difference and interval of comparisons.csv follows from summary.csv by the stated method."""
    from carcolor.analysis import stats
    tables = smoke_run / "results" / "tables"
    summary, comparisons = pd.read_csv(tables / "summary.csv"), pd.read_csv(tables / "comparisons.csv")
    assert set(comparisons["n_seeds"]) == {2}
    row = comparisons[(comparisons["claim_id"] == "adamax-better")
                      & (comparisons["held_fixed"] == "arch=mobilenet_v2")].iloc[0]
    side = summary[summary["arch"] == "mobilenet_v2"].set_index(["optimizer", "seed"])["score_f1_macro"]
    again = stats.paired_difference(side["adamax"].sort_index(), side["adam"].sort_index())
    assert row["estimate"] == pytest.approx(again["estimate"]) and row["low"] == pytest.approx(again["low"])
    assert row["high"] == pytest.approx(again["high"]) and row["method"] == again["method"]
    for _, r in comparisons.iterrows():
        assert r["verdict"] == stats.verdict(r["low"], r["high"], expect=r["expect"]), r.to_dict()


def test_report_html_and_pdf(smoke_run):
    from pypdf import PdfReader

    report = smoke_run / "results" / "report"
    html = (report / "index.html").read_text()
    assert html.count("data:image/png;base64") + html.count("data:image/svg") >= 4
    assert "synthetic" in html.lower()
    text = "\n".join(page.extract_text() for page in PdfReader(report / "index.pdf").pages)
    flat = " ".join(text.split())
    for cell in CELLS:
        assert cell in flat, cell
    assert "synthetic" in flat.lower()
    verdicts = pd.read_csv(smoke_run / "results" / "tables" / "comparisons.csv")["verdict"]
    for verdict in set(verdicts):
        assert verdict in flat.lower(), verdict
    assert not (smoke_run / "results" / ".report.build").exists()  # the renderer's work folder is gone


def test_every_run_links_to_its_notebook_page(smoke_run):
    """The report links each run to results/report/cells/<cell>.html by a relative link; each page is
    self-contained (figures inline, nothing fetched) and links back; the PDF names each page's path."""
    from pypdf import PdfReader

    report = smoke_run / "results" / "report"
    html = (report / "index.html").read_text()
    flat = " ".join("\n".join(p.extract_text() for p in PdfReader(report / "index.pdf").pages).split())
    for cell in CELLS:
        page = report / "cells" / f"{cell}.html"
        assert f'href="cells/{cell}.html"' in html, cell
        assert f"cells/{cell}.html" in flat, cell
        text = page.read_text()
        assert f"[{cell}] epoch 3/3" in text  # the notebook's own output
        assert "data:image/png;base64" in text and 'href="../index.html#sec-runs"' in text
        assert "<script src=" not in text


def test_provenance_appendix_and_table(smoke_run):
    from carcolor import provenance
    prov = pd.read_csv(smoke_run / "results" / "tables" / "provenance.csv")
    assert sorted(prov["cell"]) == sorted(CELLS)
    assert (prov["cpu_model"] == provenance.cpu_model()).all() and (prov["cpu_cores"] > 0).all()
    assert (pd.to_datetime(prov["started"]) <= pd.to_datetime(prov["ended"])).all()
    assert prov["rerun"].str.startswith("make cell CELL=").all()
    assert prov["rerun"].str.endswith("tests/smoke.yaml").all()  # the run's --configfile
    assert prov["inductor_cache"].str.endswith("data/cache/inductor").all()  # the compile cache the cells share
    html = (smoke_run / "results" / "report" / "index.html").read_text()
    assert 'id="sec-provenance"' in html and provenance.cpu_model() in html
    assert f"make cell CELL={CELLS[0]} CONFIG=" in html


def test_snakemakes_own_report(repo, smoke_run, tool_env):
    """`snakemake --report` packs the outputs marked report(...) by category, with its provenance."""
    import zipfile

    out = snakemake(smoke_run, smoke_run, "--report", "results/snakemake-report.zip", env=tool_env)
    archive = smoke_run / "results" / "snakemake-report.zip"
    assert archive.stat().st_size > 0, out.stderr[-2000:]
    names = {Path(n).name for n in zipfile.ZipFile(archive).namelist()}
    expected = {"report.html", "index.html", "index.pdf", "summary.csv", "provenance.csv", "comparisons.csv",
                "loss.png", "confusion.png", *(f"{cell}.html" for cell in CELLS)}
    assert expected <= names, sorted(expected - names)


def test_no_op_rerun_has_nothing_to_do(repo, smoke_run, tool_env):
    start = time.time()
    out = snakemake(smoke_run, smoke_run, "-n", env=tool_env)
    assert "Nothing to be done" in out.stdout + out.stderr
    assert time.time() - start < 30


def _override(tmp_path, name: str, text: str) -> list:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return ["tests/smoke.yaml", path]


RECORD = {"record_config": 1}  # results/config.yaml records the resolved config: any change rewrites it


@pytest.mark.parametrize("name, text, plan", [
    ("epochs", "train: {epochs: 4}", {**TRAIN_ALL, **RECORD}),
    ("lr", "train: {lr: 0.001}", {**TRAIN_ALL, **RECORD}),
    ("kwargs", "train: {optimizer_kwargs: {betas: [0.8, 0.99]}}", {**TRAIN_ALL, **RECORD}),
    ("threads", "train: {threads: 2}", {**TRAIN_ALL, **RECORD}),
    ("image_size", "data: {image_size: 24}", {"prepare_dataset": 1, **TRAIN_ALL, **RECORD}),
    ("synthetic_seed", "synthetic: {seed: 1}", {"generate_synthetic": 1, "prepare_dataset": 1, **TRAIN_ALL, **RECORD}),
    ("new_seed", "grid: {seeds: [0, 1, 2]}", {**TRAIN_ALL, "train_cell": 4, "cell_page": 4, **RECORD}),  # the new cells
    ("one_arch", "grid: {archs: [mobilenet_v2]}", {**AFTER_TABLES, **RECORD}),
    ("cluster", "cluster: {gpus_per_job: 0}", RECORD),  # what a cluster job asks for changes no result
])
def test_a_changed_setting_reruns_exactly_what_depends_on_it(repo, smoke_run, tool_env, tmp_path, name, text, plan):
    out = snakemake(smoke_run, smoke_run, "-n", env=tool_env, config=_override(tmp_path, name, text))
    assert planned(out) == plan, (out.stdout + out.stderr)[-3000:]


def test_a_dvm_archive_that_does_not_exist_is_named(repo, smoke_run, tool_env, tmp_path):
    config = _override(tmp_path, "dvm", "data: {source: dvm, paths: [nowhere/resized_DVM_v2.zip]}")
    out = snakemake(smoke_run, smoke_run, "-n", env=tool_env, config=config, check=False)
    assert out.returncode != 0 and "nowhere/resized_DVM_v2.zip" in out.stdout + out.stderr


def test_the_workflow_uses_its_own_checkout(repo, tmp_path, tool_env):
    """Another copy of the project runs its own config, notebook and code, whatever carcolor is installed."""
    copy = copy_checkout(tmp_path / "copy")
    config = copy / "experiments" / "config.yaml"
    config.write_text(config.read_text().replace("archs: [mobilenet_v2, mobilenet_v1]", "archs: [mobilenet_v2]"))
    layout = copy / "carcolor" / "layout.py"
    layout.write_text(layout.read_text().replace('REPORT_DIR = "results/report"', 'REPORT_DIR = "results/copy"'))
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(snakemake_cmd(work, "-n", "-p", checkout=copy, config=None),
                         capture_output=True, text=True, env=tool_env)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    from carcolor import config as cfgmod
    cells = cfgmod.cells(cfgmod.load(config))
    assert {c.arch for c in cells} == {"mobilenet_v2"}
    assert planned(out)["train_cell"] == len(cells)  # the copy's config: one architecture
    assert "results/copy/index.html" in text  # the copy's package
    assert str(copy / "experiments" / "train.ipynb") in text and str(repo / "experiments") not in text


def test_rules_run_with_snakemakes_interpreter(repo, tmp_path, tool_env):
    """An un-activated .venv/bin/snakemake: the jobs must not need the venv on PATH."""
    env = {**tool_env, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(repo / "Snakefile"),
                          "--cores", "1", "--configfile", str(repo / "tests/smoke.yaml"), "--directory",
                          str(tmp_path), "generate_synthetic"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert (tmp_path / "data" / "synthetic" / "images.csv").exists()


def test_rerun_one_cell_touches_only_that_cell(repo, smoke_run, tool_env):
    target = "mobilenet_v1-adam-s0"
    files = {p: p.stat().st_mtime_ns for p in (smoke_run / "results" / "runs").rglob("*") if p.is_file()}
    report = {p: p.stat().st_mtime_ns for p in (smoke_run / "results" / "report").iterdir()}
    pages = {p: p.stat().st_mtime_ns for p in (smoke_run / "results" / "report" / "cells").iterdir()}
    time.sleep(1)
    snakemake(smoke_run, smoke_run, "--forcerun", f"results/runs/{target}/train.ipynb",
              env={**tool_env, RETRAIN: target})  # `make cell CELL=...`'s command
    for path, mtime in files.items():
        changed = path.stat().st_mtime_ns != mtime
        assert changed == (target in path.parts), path
    assert all(p.stat().st_mtime_ns != m for p, m in report.items() if p.suffix in (".html", ".pdf"))
    for page, mtime in pages.items():  # only the re-trained cell's page is exported again
        assert (page.stat().st_mtime_ns != mtime) == (page.stem == target), page
    log = (smoke_run / "results" / "logs" / "train_cell" / f"{target}.log").read_text()
    assert f"[{target}] epoch 1/3" in log  # trained again, not reused
    out = snakemake(smoke_run, smoke_run, "-n", env=tool_env)
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.parametrize("name", ["train.ipynb", "summary.json", "provenance.json"])
def test_a_missing_run_record_is_made_again_by_the_plain_command(smoke_run, tool_env, name):
    """A killed forced re-training leaves a cell without its record (Snakemake removes a job's outputs when it
    starts) while the tables and the report still stand: the plain command must re-make it."""
    path = smoke_run / "results" / "runs" / CELLS[0] / name
    kept = path.with_name(f"kept-{name}")
    path.rename(kept)
    try:
        plan = planned(snakemake(smoke_run, smoke_run, "-n", env=tool_env))
    finally:
        kept.rename(path)
    assert plan == {"train_cell": 1, "cell_page": 1, **AFTER_TABLES}, plan


def test_cache_size_the_cluster_memory_request_counts_is_the_prepared_cache(repo, smoke_run):
    from carcolor import config as cfgmod
    from carcolor import workflow as wf
    cfg = cfgmod.load(repo / "tests" / "smoke.yaml")
    arrays = [np.load(p, mmap_mode="r") for p in sorted((smoke_run / "data" / "prepared").glob("*_images.npy"))]
    assert len(arrays) == 3 and wf.cache_bytes(cfg) == sum(a.nbytes for a in arrays)
    assert wf.train_mem_mb(cfg) == wf.TRAIN_BASE_MB + 1 + 35  # 0.3 MiB of images, 16 x 32 x 32 x 2,200 bytes = 34.4 MiB
