"""The real Snakefile on the tiny smoke config: lint, dry run, full run, no-op re-run, one-cell re-run.

One full run (module fixture) feeds all checks of the outputs: tables, executed notebooks, report.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

pytestmark = pytest.mark.workflow

CELLS = ["mobilenet_v2-adam-s0", "mobilenet_v2-adamax-s0", "mobilenet_v1-adam-s0", "mobilenet_v1-adamax-s0"]


def snakemake(repo, workdir, *args, env, config="tests/smoke.yaml", check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--cores", "2",
           "--configfile", str(repo / config), "--directory", str(workdir), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


@pytest.fixture(scope="module")
def run(repo, tmp_path_factory, tool_env):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(repo, workdir, env=tool_env)
    return workdir


def test_lint_reports_nothing_but_conda_environments(repo, tmp_path, tool_env):
    out = snakemake(repo, tmp_path, "--lint", env=tool_env, check=False)
    lints = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("    * ")]
    assert lints, "the linter printed nothing: was it run?"
    assert set(lints) == {"* Specify a conda environment or container for each rule.:"}, lints


def test_dry_run_lists_every_stage(repo, tmp_path, tool_env):
    out = snakemake(repo, tmp_path, "-n", env=tool_env)
    text = out.stdout + out.stderr
    for rule, count in [("generate_synthetic", 1), ("prepare_dataset", 1), ("train_cell", 4),
                        ("collect_tables", 1), ("render_report", 1)]:
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), (rule, text[-3000:])


def test_bad_config_fails_in_one_line_before_anything_runs(repo, tmp_path, tool_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  optimizers: [adam, adamx]\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--cores", "1",
           "--configfile", str(bad), "--directory", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=tool_env)
    assert out.returncode != 0
    lines = [l for l in out.stderr.splitlines() if l.startswith("carcolor:")]
    assert len(lines) == 1 and "'adamx'" in lines[0] and "adamax" in lines[0], out.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_every_cell_has_its_executed_notebook_and_results(run):
    for cell in CELLS:
        folder = run / "results" / "runs" / cell
        nb = nbformat.read(folder / "train.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and f'cell = "{cell}"' in injected[0].source
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        for name in ("metrics.csv", "predictions.csv", "summary.json", "checkpoint.pt", "provenance.json"):
            assert (folder / name).stat().st_size > 0
        log = (run / "results" / "logs" / "train_cell" / f"{cell}.log").read_text()
        assert f"[{cell}] epoch 2/2" in log  # the per-epoch progress line


def test_tidy_tables(run):
    tables = run / "results" / "tables"
    epochs = pd.read_csv(tables / "epochs.csv")
    for col in ["arch", "optimizer", "seed", "epoch", "split", "loss", "f1_macro", "accuracy", "seconds",
                "images_per_s"]:
        assert col in epochs.columns
    assert len(epochs) == len(CELLS) * 2 * 2  # cells x epochs x splits
    assert set(epochs["cell"]) == set(CELLS) and set(epochs["split"]) == {"train", "val"}
    assert epochs[["loss", "f1_macro", "accuracy", "seconds", "images_per_s"]].notna().all().all()
    summary = pd.read_csv(tables / "summary.csv")
    assert list(summary["cell"]) == CELLS
    for col in ["best_val_f1_macro", "final_val_f1_macro", "final_val_loss", "train_seconds",
                "mean_epoch_seconds", "images_per_s", "params", "device"]:
        assert summary[col].notna().all(), col
    assert (summary["params"] > 1e6).all()
    per_class = pd.read_csv(tables / "per_class.csv")
    assert len(per_class) == len(CELLS) * 4
    confusion = pd.read_csv(tables / "confusion.csv")
    assert confusion.groupby("cell")["count"].sum().eq(4 * 6).all()  # 4 colours x 6 val images
    dataset = pd.read_csv(tables / "dataset.csv")
    assert dataset.groupby("split")["images"].sum().to_dict() == {"train": 64, "val": 24}
    info = json.loads((tables / "dataset.json").read_text())
    assert info["synthetic"] is True and info["advert_level_split"] is True


def test_report_html_and_pdf(run):
    from pypdf import PdfReader

    report = run / "results" / "report"
    html = (report / "index.html").read_text()
    assert html.count("data:image/png;base64") + html.count("data:image/svg") >= 4
    assert "synthetic" in html.lower()
    text = "\n".join(page.extract_text() for page in PdfReader(report / "index.pdf").pages)
    flat = " ".join(text.split())
    for cell in CELLS:
        assert cell in flat, cell
    assert "synthetic" in flat.lower()


def test_no_op_rerun_has_nothing_to_do(repo, run, tool_env):
    start = time.time()
    out = snakemake(repo, run, "-n", env=tool_env)
    assert "Nothing to be done" in out.stdout + out.stderr
    assert time.time() - start < 30


def test_rerun_one_cell_touches_only_that_cell(repo, run, tool_env):
    target = "mobilenet_v1-adam-s0"
    files = {p: p.stat().st_mtime_ns for p in (run / "results" / "runs").rglob("*") if p.is_file()}
    report = {p: p.stat().st_mtime_ns for p in (run / "results" / "report").iterdir()}
    time.sleep(1)
    snakemake(repo, run, "--forcerun", f"results/runs/{target}/train.ipynb", env=tool_env)
    for path, mtime in files.items():
        changed = path.stat().st_mtime_ns != mtime
        assert changed == (target in path.parts), path
    assert all(p.stat().st_mtime_ns != m for p, m in report.items() if p.suffix in (".html", ".pdf"))
    out = snakemake(repo, run, "-n", env=tool_env)
    assert "Nothing to be done" in out.stdout + out.stderr
