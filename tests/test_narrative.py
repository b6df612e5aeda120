"""Sentences and tables of the report, on the fixture tables and on edge cases."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from carcolor import narrative as n

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tables():
    return n.load_tables(FIXTURES)


@pytest.fixture(scope="module")
def lab():
    return n.load_lab(ROOT / "report" / "lab.csv")


def _drop(t, *, optimizer=None, arch=None):
    def keep(df):
        m = pd.Series(True, index=df.index)
        if optimizer:
            m &= df["optimizer"] != optimizer
        if arch:
            m &= df["arch"] != arch
        return df[m]

    return keep(t.summary), keep(t.epochs)


# --------------------------------------------------------------------------- loading


def test_load_tables(tables):
    assert len(tables.summary) == 4
    assert set(tables.epochs["split"]) == {"train", "val"}
    assert tables.dataset_info["synthetic"] is True
    assert len(tables.dataset_info["colours"]) == 11


def test_missing_table_names_file_and_command(tmp_path):
    shutil.copytree(FIXTURES / "tables", tmp_path / "tables")
    (tmp_path / "tables" / "confusion.csv").unlink()
    with pytest.raises(n.MissingResultsError) as err:
        n.load_tables(tmp_path)
    assert "confusion.csv" in str(err.value)
    assert "snakemake --cores all" in str(err.value)
    (tmp_path / "tables" / "dataset.json").unlink()
    shutil.copy(FIXTURES / "tables" / "confusion.csv", tmp_path / "tables")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        n.load_tables(tmp_path)


def test_results_dir_and_renderer_from_env(monkeypatch):
    monkeypatch.delenv("CARCOLOR_RESULTS", raising=False)
    monkeypatch.delenv("CARCOLOR_RENDERER", raising=False)
    assert n.results_dir() == Path("../results")
    assert n.renderer_name() == "Quarto"
    monkeypatch.setenv("CARCOLOR_RESULTS", "/x/results")
    monkeypatch.setenv("CARCOLOR_RENDERER", "Quarto 1.6.40")
    assert n.results_dir() == Path("/x/results")
    assert n.renderer_name() == "Quarto 1.6.40"


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.6, "0:01:00"), (5914, "1:38:34"),
                                           (6874, "1:54:34"), (90061, "25:01:01")])
def test_fmt_duration(seconds, text):
    assert n.fmt_duration(seconds) == text


def test_lab_csv_is_consistent(lab):
    assert len(lab) == 3
    for _, r in lab.iterrows():
        assert n.fmt_duration(r["train_seconds"]) == r["train_time"]
    assert n._lab_row(lab, "mobilenet_v1", "adamax") is None


def test_md_table_alignment_and_caption():
    df = pd.DataFrame({"Cell": ["`a`", "`b`"], "Time": ["0:01:00", "–"], "Note": ["x", "y"]})
    md = n.md_table(df, "Caption here.")
    header_rule = md.splitlines()[1]
    assert header_rule.startswith("|:") and header_rule.count("-:|") == 1
    assert md.rstrip().endswith(": Caption here.")


# --------------------------------------------------------------------------- top matter and data


def test_synthetic_note():
    assert "synthetic data" in n.synthetic_note({"source": "synthetic", "synthetic": True})
    assert n.synthetic_note({"source": "dvm", "synthetic": False}) == ""
    assert n.synthetic_note({"source": "synthetic", "synthetic": False}) != ""


def test_dataset_table_and_facts(tables):
    df = n.dataset_table(tables.dataset)
    assert list(df.columns) == ["Colour", "Train images", "Train adverts", "Val images", "Val adverts"]
    assert len(df) == 12 and df.iloc[-1]["Train images"] == "1,320"
    facts = n.dataset_facts(tables.dataset_info, tables.dataset)
    assert "Images skipped:** none" in facts
    assert "Advert-level split** (all images of one advert on the same side): yes" in facts
    info = dict(tables.dataset_info, synthetic=False, source="dvm", advert_level_split=False,
                skipped={"unreadable": 2, "too_small": 0, "missing_colour": 5}, archives=["/d/a.zip"])
    facts = n.dataset_facts(info, tables.dataset)
    assert "7 (2 unreadable and 5 missing colour)" in facts
    assert "same side): no" in facts and "**Read from:** `a.zip`" in facts


def test_grid_facts(tables):
    f = n.grid_facts(tables.summary, tables.epochs)
    assert f["n_cells"] == "4" and f["epochs"] == "6" and f["image_size"] == "96"
    assert f["best_cell"] == "`mobilenet_v2-adamax-s0`" and f["best_f1"] == "0.799"
    assert f["devices"] == "cpu (2 threads)"


def test_tables_list_every_cell(tables, lab):
    q, t = n.quality_table(tables.summary), n.time_table(tables.summary)
    cells = [f"`{c}`" for c in n.cells(tables.summary)]
    assert list(q["Cell"]) == cells and list(t["Cell"]) == cells
    assert "Device" not in t.columns and n.device_caption(tables.summary) == "All runs on cpu (2 threads)."
    two = tables.summary.assign(device=["cpu (2 threads)", "NVIDIA H100 80GB HBM3"] * 2)
    assert "Device" in n.time_table(two).columns and n.device_caption(two) == ""
    assert list(t["vs fastest"]) == ["1.45×", "1.43×", "1.00×", "1.01×"]


def test_timing_breakdown_adds_up(tables):
    b = n.timing_breakdown(tables.epochs)
    parts = b[["data_s", "forward_backward_s", "optimizer_s", "other_s", "eval_s"]].sum(axis=1)
    total = tables.summary.set_index("cell").loc[b["cell"], "train_seconds"].to_numpy()
    assert (abs(parts.to_numpy() - total) < 0.05).all()


# --------------------------------------------------------------------------- findings on the fixtures


def test_findings_on_fixture(tables, lab):
    text = n.findings(tables.summary, tables.epochs, lab)
    assert "With MobileNetV2, Adamax was more stable than Adam: validation loss rose in 0 of 5" in text
    assert "With MobileNetV1, Adamax was more stable than Adam: validation loss rose in 1 of 5" in text
    assert "Adamax reached a higher best validation macro-F1 than Adam: 0.799 vs 0.769, a difference of +0.030" in text
    assert "MobileNetV2 + Adamax took 1:54:34 against 1:38:34 for MobileNetV2 + Adam (1.16×)" in text
    assert "With MobileNetV2, Adamax was faster than Adam in total" in text
    assert "Its optimizer steps took 1.36× as long as Adam's" in text
    assert "With MobileNetV1, Adamax was slower than Adam in total" in text
    assert "MobileNetV1 + Adam took 1:11:21 against 1:38:34 for MobileNetV2 + Adam (0.72×)" in text
    assert "MobileNetV1 + Adam was less accurate than MobileNetV2 + Adam" in text
    assert "but faster than it" in text
    assert "Not available" not in text


def test_stability_measures(tables):
    s = n.stability(tables.epochs).set_index("cell")
    assert s.loc["mobilenet_v2-adamax-s0", "rises"] == 0
    assert s.loc["mobilenet_v2-adam-s0", "rises"] == 1
    assert (s["transitions"] == 5).all()
    assert s.loc["mobilenet_v2-adamax-s0", "late_std"] < s.loc["mobilenet_v2-adam-s0", "late_std"]


def test_lab_facts(lab):
    assert n.lab_facts(lab) == {"n_runs": "3", "n_grid": "4", "not_run": "MobileNetV1 + Adamax",
                                "val_images_per_colour": "1,000"}
    full = pd.concat([lab, lab.iloc[[0]].assign(arch="mobilenet_v1", optimizer="adamax")])
    assert n.lab_facts(full)["not_run"] == "none"


def test_lab_comparison_table(tables, lab):
    df = n.lab_comparison_table(tables.summary, lab)
    assert list(df["Model + optimizer"]) == ["MobileNetV2 + Adam", "MobileNetV2 + Adamax",
                                             "MobileNetV1 + Adam", "MobileNetV1 + Adamax"]
    assert list(df["Lab time"]) == ["1:38:34", "1:54:34", "1:11:21", "not run"]
    assert list(df["Lab, rel."]) == ["1.00×", "1.16×", "0.72×", "–"]
    assert df.loc[3, "Cell(s)"] == "`mobilenet_v1-adamax-s0`"


# --------------------------------------------------------------------------- edge cases


def test_grid_without_adamax(tables, lab):
    summary, epochs = _drop(tables, optimizer="adamax")
    text = n.findings(summary, epochs, lab)
    assert text.count("Not available") == 6  # stability, F1, time for each architecture
    assert "no MobileNetV2 + Adamax run" in text
    assert "MobileNetV1 + Adam was less accurate than MobileNetV2 + Adam" in text
    df = n.lab_comparison_table(summary, lab)
    row = df[df["Model + optimizer"] == "MobileNetV2 + Adamax"].iloc[0]
    assert row["Cell(s)"] == "not in this run" and row["This run"] == "–" and row["Lab time"] == "1:54:34"


def test_grid_without_mobilenet_v1(tables, lab):
    summary, epochs = _drop(tables, arch="mobilenet_v1")
    text = n.findings(summary, epochs, lab)
    assert "Not available: this grid has no MobileNetV1 + Adam run" in text
    assert "With MobileNetV1" not in text
    assert "With MobileNetV2, Adamax was more stable" in text


def test_grid_without_mobilenet_v2(tables):
    summary, epochs = _drop(tables, arch="mobilenet_v2")
    text = n.findings(summary, epochs, None)
    assert "With MobileNetV1, Adamax" in text
    assert "The lab did not run" in text  # no lab table given
    assert "no MobileNetV2 + Adam run" in text


def test_ties(tables):
    s = tables.summary.copy()
    s.loc[s["cell"] == "mobilenet_v2-adamax-s0", "best_val_f1_macro"] = float(
        s.loc[s["cell"] == "mobilenet_v2-adam-s0", "best_val_f1_macro"].iloc[0]) + 0.0001
    s.loc[s["cell"] == "mobilenet_v2-adamax-s0", "train_seconds"] = float(
        s.loc[s["cell"] == "mobilenet_v2-adam-s0", "train_seconds"].iloc[0]) * 1.005
    assert "Adamax and Adam reached the same best validation macro-F1" in n.accuracy_sentence(s, "mobilenet_v2")
    assert "Adamax was as fast as Adam (within 1 %)" in n.speed_sentence(s, "mobilenet_v2")
    # identical validation curves: equally stable
    e = tables.epochs.copy()
    adam = e[(e["cell"] == "mobilenet_v2-adam-s0")].set_index(["epoch", "split"])["loss"]
    m = e["cell"] == "mobilenet_v2-adamax-s0"
    e.loc[m, "loss"] = [adam.loc[(ep, sp)] for ep, sp in zip(e.loc[m, "epoch"], e.loc[m, "split"])]
    assert "Adamax and Adam were equally stable by this measure" in n.stability_sentence(s, e, "mobilenet_v2")
    # same F1 for the two architectures
    s.loc[s["cell"] == "mobilenet_v1-adam-s0", "best_val_f1_macro"] = float(
        s.loc[s["cell"] == "mobilenet_v2-adam-s0", "best_val_f1_macro"].iloc[0])
    sentence = n.architecture_sentence(s)
    assert "was as accurate as MobileNetV2 + Adam" in sentence and " and faster than it" in sentence


def test_adamax_faster_and_less_stable(tables):
    s = tables.summary.copy()
    s.loc[s["cell"] == "mobilenet_v1-adamax-s0", ["train_seconds", "optimizer_s"]] = [50.0, 2.0]
    text = n.speed_sentence(s, "mobilenet_v1")
    assert "Adamax was faster than Adam in total" in text and "(0.47× Adam's time)" in text
    assert "Its optimizer steps took 0.37× as long as Adam's" in text
    e = tables.epochs.copy()
    m = (e["cell"] == "mobilenet_v1-adamax-s0") & (e["split"] == "val")
    e.loc[m, "loss"] = [1.0, 1.2, 0.9, 1.1, 0.8, 1.0]
    assert "Adamax was less stable than Adam" in n.stability_sentence(s, e, "mobilenet_v1")


def test_v1_more_accurate_and_slower(tables):
    s = tables.summary.copy()
    s.loc[s["cell"] == "mobilenet_v1-adam-s0", ["best_val_f1_macro", "train_seconds"]] = [0.9, 500.0]
    assert ("MobileNetV1 + Adam was more accurate than MobileNetV2 + Adam"
            in n.architecture_sentence(s))
    assert " but slower than it" in n.architecture_sentence(s)


def test_several_seeds_are_averaged(tables):
    s2 = tables.summary.copy()
    s2["seed"] = 1
    s2["cell"] = s2["cell"].str.replace("-s0", "-s1")
    s2["best_val_f1_macro"] += 0.01
    s = pd.concat([tables.summary, s2], ignore_index=True)
    text = n.accuracy_sentence(s, "mobilenet_v2")
    assert "(mean of 2 seeds)" in text
    assert n.combos(s)["n_seeds"].tolist() == [2, 2, 2, 2]
    df = n.lab_comparison_table(s, pd.DataFrame(columns=["arch", "optimizer", "train_time", "train_seconds"]))
    assert "`mobilenet_v2-adam-s0`, `mobilenet_v2-adam-s1`" in df["Cell(s)"].tolist()


def test_how_made(tables):
    text = n.how_made("pandoc 3.9 + Typst 0.15 (offline fallback)", tables.summary, today=date(2025, 1, 2))
    assert "pandoc 3.9 + Typst 0.15 (offline fallback)" in text
    assert "2025-01-02" in text and "cpu (2 threads)" in text and "results/tables/" in text


def test_fixture_is_internally_consistent(tables):
    """The fixture's summary agrees with its epochs and per-class tables."""
    for _, r in tables.summary.iterrows():
        e = tables.epochs[(tables.epochs["cell"] == r["cell"]) & (tables.epochs["split"] == "val")]
        assert abs(e["f1_macro"].max() - r["best_val_f1_macro"]) < 1e-9
        assert abs(e["f1_macro"].iloc[-1] - r["final_val_f1_macro"]) < 1e-9
        pc = tables.per_class[tables.per_class["cell"] == r["cell"]]
        assert abs(pc["f1"].mean() - r["final_val_f1_macro"]) < 1e-3
        cm = tables.confusion[tables.confusion["cell"] == r["cell"]]
        assert len(cm) == 121
    info = json.loads((FIXTURES / "tables" / "dataset.json").read_text())
    assert info["n_val_per_colour"] * len(info["colours"]) == int(
        tables.dataset[tables.dataset["split"] == "val"]["images"].sum())
