"""The numbers, names and tables the report is made of (carcolor.reporting: results, fmt, pairs, facts,
result_tables, appendix), on the fixture tables (12 runs: 4 pairs x 3 seeds, with a test split), on their
cuts and on edge cases."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from carcolor.analysis import claims, stats
from carcolor.reporting import appendix, facts, fmt, pairs, result_tables, results
from tests.fixtures import make_tables as fx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tables():
    return results.load_tables(FIXTURES)


@pytest.fixture(scope="module")
def raw():
    return fx.read_tables(FIXTURES / "tables")


@pytest.fixture(scope="module")
def lab():
    return results.load_lab(ROOT / "report" / "lab.csv")


# --------------------------------------------------------------------------- the fixtures


def test_load_tables(tables):
    assert len(tables.summary) == 12 and pairs.n_seeds(tables.summary) == 3
    assert set(tables.epochs["split"]) == {"train", "val", "test"}
    assert list(tables.comparisons.columns) == claims.COLUMNS
    assert tables.dataset_info["synthetic"] is True and tables.dataset_info["protocol"] == "test"
    assert len(tables.dataset_info["colours"]) == 11


def test_fixture_files_are_what_the_generator_makes():
    """The committed CSVs are `python -m tests.fixtures.make_tables` output, not hand edits."""
    made, stored = fx.make_tables(), fx.read_tables(FIXTURES / "tables")
    assert set(made) == set(stored)
    assert made["dataset.json"] == stored["dataset.json"]
    for name in set(made) - {"dataset.json"}:
        pd.testing.assert_frame_equal(made[name].reset_index(drop=True), stored[name], check_dtype=False,
                                      rtol=1e-9, obj=name)


def test_fixture_is_internally_consistent(tables):
    """Summary, epochs, per-class and confusion tables tell the same story; comparisons follow from them."""
    for _, r in tables.summary.iterrows():
        e = tables.epochs[tables.epochs["cell"] == r["cell"]]
        val, test = e[e["split"] == "val"], e[e["split"] == "test"]
        assert val["f1_macro"].max() == r["best_val_f1_macro"]
        assert int(val.loc[val["f1_macro"].idxmax(), "epoch"]) == r["best_epoch"]
        at = test[test["epoch"] == r["best_epoch"]].iloc[0]
        assert (at["f1_macro"], at["accuracy"], at["loss"]) == (r["score_f1_macro"], r["score_accuracy"],
                                                                r["score_loss"])
        pc = tables.per_class[tables.per_class["cell"] == r["cell"]]
        assert abs(pc["f1"].mean() - r["score_f1_macro"]) < 1e-4 and set(pc["split"]) == {"test"}
        cm = tables.confusion[tables.confusion["cell"] == r["cell"]]
        assert len(cm) == 121 and cm["count"].sum() == r["test_images"]
    pd.testing.assert_frame_equal(
        claims.comparisons(tables.summary.drop(columns="val_loss_change_sd"), tables.epochs), tables.comparisons)
    info = tables.dataset_info
    for split in ("val", "test"):
        assert info[f"n_{split}_per_colour"] * len(info["colours"]) == int(
            tables.dataset[tables.dataset["split"] == split]["images"].sum())


def test_fixture_has_every_kind_of_verdict(tables, raw):
    assert claims.verdict_counts(tables.comparisons) == {"supported": 9, "contradicted": 1, "inconclusive": 4}
    one_seed = fx.only_seeds(raw, [0])
    assert set(one_seed["comparisons"]["verdict"]) == {"inconclusive"}
    assert set(one_seed["comparisons"]["n_seeds"]) == {1} and set(one_seed["summary"]["seed"]) == {0}


def test_cuts_of_the_fixture(raw):
    one = fx.only_pairs(raw, [("mobilenet_v2", "adam")])
    assert set(one["summary"]["cell"]) == {"mobilenet_v2-adam-s0", "mobilenet_v2-adam-s1", "mobilenet_v2-adam-s2"}
    assert one["comparisons"].empty and len(one["provenance"]) == 3
    val = fx.without_test_split(raw)
    assert set(val["epochs"]["split"]) == {"train", "val"} and set(val["summary"]["score_split"]) == {"val"}
    assert val["dataset.json"]["protocol"] == "val" and "test" not in set(val["dataset"]["split"])
    row = val["summary"].iloc[0]
    epochs = val["epochs"]
    assert row["score_f1_macro"] == epochs[(epochs["cell"] == row["cell"]) & (epochs["split"] == "val")
                                           & (epochs["epoch"] == row["best_epoch"])]["f1_macro"].item()
    assert set(fx.tied(raw)["summary"]["score_f1_macro"]) == {0.1}


def test_dataset_json_round_trips(tmp_path, raw):
    folder = fx.write_tables(fx.only_seeds(raw, [0]), tmp_path / "tables")
    assert json.loads((folder / "dataset.json").read_text())["protocol"] == "test"
    assert len(results.load_tables(tmp_path).summary) == 4


# --------------------------------------------------------------------------- loading and formatting


def test_missing_table_names_file_and_command(tmp_path):
    shutil.copytree(FIXTURES / "tables", tmp_path / "tables")
    (tmp_path / "tables" / "comparisons.csv").unlink()
    with pytest.raises(results.MissingResultsError) as err:
        results.load_tables(tmp_path)
    assert "comparisons.csv" in str(err.value) and results.MAKE_COMMAND in str(err.value)
    (tmp_path / "tables" / "dataset.json").unlink()
    shutil.copy(FIXTURES / "tables" / "comparisons.csv", tmp_path / "tables")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        results.load_tables(tmp_path)


def test_results_dir_and_renderer_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv(results.RESULTS_VARIABLE, raising=False)
    monkeypatch.delenv(results.RENDERED_WITH_VARIABLE, raising=False)
    monkeypatch.delenv(results.QUARTO_SHARE_VARIABLE, raising=False)
    assert results.results_dir() == Path("../results")
    assert results.renderer_name() == "Quarto"
    (tmp_path / "version").write_text("1.7.34\n")  # a plain `quarto render`: Quarto's resources hold its version
    monkeypatch.setenv(results.QUARTO_SHARE_VARIABLE, str(tmp_path))
    assert results.renderer_name() == "Quarto 1.7.34"
    env = results.environment("/x/results", "Quarto 1.6.40")
    monkeypatch.setenv(results.RESULTS_VARIABLE, env[results.RESULTS_VARIABLE])
    monkeypatch.setenv(results.RENDERED_WITH_VARIABLE, env[results.RENDERED_WITH_VARIABLE])
    assert results.results_dir() == Path("/x/results")
    assert results.renderer_name() == "Quarto 1.6.40"


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.6, "0:01:00"), (5914, "1:38:34"),
                                           (6874, "1:54:34"), (90061, "25:01:01")])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


def test_numbers_bands_and_lists():
    assert fmt.band(0.81234, 0.0131) == "0.812 ± 0.013"
    assert fmt.band(0.81234, math.nan) == "0.812"  # one seed: no half-width
    assert fmt.band(math.nan, 0.1) == "–"
    assert fmt.band(170.4, 9.2, fmt.duration) == "0:02:50 ± 0:00:09"
    assert (fmt.count(2238027), fmt.count(104560000), fmt.count(1.2e9), fmt.count(512)) == (
        "2.24 M", "104.6 M", "1.20 G", "512")
    assert (fmt.join([]), fmt.join(["a"]), fmt.join(["a", "b", "c"])) == ("", "a", "a, b and c")
    assert (fmt.quantity(1, "seed"), fmt.quantity(3, "pair")) == ("one seed", "3 pairs")
    assert fmt.code_list(["a", "b"]) == "`a` and `b`" and fmt.code_list([]) == "–"
    assert fmt.code_list("abcdefg") == "`a`, `b`, `c`, `d`, `e` and 2 more"
    assert fmt.cell_link("mobilenet_v2-adam-s0") == "[`mobilenet_v2-adam-s0`](cells/mobilenet_v2-adam-s0.html)"


def test_lab_csv_is_consistent(lab):
    assert len(lab) == 3
    for _, r in lab.iterrows():
        assert fmt.duration(r["train_seconds"]) == r["train_time"]
    assert pairs.rows_of(lab, "mobilenet_v1", "adamax").empty


def test_md_table_alignment_caption_and_label():
    df = pd.DataFrame({"Cell": ["`a`", "`b`"], "Time": ["0:01:00", "–"], "Note": ["x", "y"],
                       "Estimate": ["−0.1 [−0.2, +0.1]", "+0.3 [+0.1, +0.5]"]})
    md = fmt.md_table(df, "Caption here.")
    header_rule = md.splitlines()[1]
    assert header_rule.startswith("|:") and header_rule.count("-:|") == 2
    assert md.rstrip().endswith(": Caption here.")
    assert fmt.md_table(pd.DataFrame({"a": [1]}), "Cap.", "tbl-a").rstrip().endswith(": Cap. {#tbl-a}")
    with pytest.raises(ValueError, match="tbl-"):
        fmt.md_table(pd.DataFrame({"a": [1]}), "Cap.", "table-a")


# --------------------------------------------------------------------------- the grid as pairs


def test_pair_means_are_means_over_seeds(tables):
    c = pairs.pair_means(tables.summary)
    assert [(r["arch"], r["optimizer"]) for _, r in c.iterrows()] == [
        ("mobilenet_v2", "adam"), ("mobilenet_v2", "adamax"), ("mobilenet_v1", "adam"), ("mobilenet_v1", "adamax")]
    assert set(c["n_seeds"]) == {3} and c.loc[0, "best_epochs"] == [5, 6, 6]
    runs = tables.summary[tables.summary["cell"].str.startswith("mobilenet_v1-adam-")]
    mean, half = stats.mean_band(runs["train_epoch_seconds"])
    assert c.loc[2, "train_epoch_seconds"] == pytest.approx(mean)
    assert c.loc[2, "train_epoch_seconds_hw"] == pytest.approx(half)
    assert list(pairs.ordered_summary(tables.summary)["cell"])[:4] == [
        "mobilenet_v2-adam-s0", "mobilenet_v2-adam-s1", "mobilenet_v2-adam-s2", "mobilenet_v2-adamax-s0"]


def test_best_pair_and_ties(tables, raw):
    assert pairs.top_pairs(tables.summary) == [("mobilenet_v2", "adamax")]
    assert pairs.best_pair(tables.summary) == ("mobilenet_v2", "adamax")
    tied = fx.tied(raw)["summary"]
    assert pairs.top_pairs(tied) == pairs.pairs(tied)  # all four print as 0.100
    fastest = pairs.pair_means(tied).sort_values("train_epoch_seconds").iloc[0]
    assert pairs.best_pair(tied) == (fastest["arch"], fastest["optimizer"]) == ("mobilenet_v1", "adam")
    # two pairs apart by less than the printed precision tie; the faster of them is shown
    close = tables.summary.copy()
    adam = close["cell"].str.startswith("mobilenet_v2-adam-")
    close.loc[adam, "score_f1_macro"] = close.loc[close["cell"].str.startswith("mobilenet_v2-adamax-"),
                                                  "score_f1_macro"].to_numpy() + 0.0002
    assert pairs.top_pairs(close) == [("mobilenet_v2", "adam"), ("mobilenet_v2", "adamax")]
    assert pairs.best_pair(close) == ("mobilenet_v2", "adam")  # 23.2 s per epoch against 24.3 s


def test_score_split_is_one_split(tables):
    assert pairs.score_split(tables.summary) == "test"
    mixed = tables.summary.assign(score_split=["test", "val"] * 6)
    with pytest.raises(ValueError, match=r"test and val; one grid scores one split: re-run `snakemake"):
        pairs.score_split(mixed)


def test_timing_breakdown_adds_up(tables):
    """The parts add up to all the time of a run, the test pass included (train_seconds leaves it out)."""
    b = pairs.timing_breakdown(tables.epochs)
    parts = b[["data_s", "forward_backward_s", "optimizer_s", "other_s", "eval_s"]].sum(axis=1)
    total = tables.epochs.groupby("cell")["seconds"].sum().loc[b["cell"]].to_numpy()
    assert (abs(parts.to_numpy() - total) < 1e-6).all()
    test_s = tables.epochs[tables.epochs["split"] == "test"].groupby("cell")["seconds"].sum()
    assert (abs(total - test_s.loc[b["cell"]].to_numpy()
                - tables.summary.set_index("cell").loc[b["cell"], "train_seconds"].to_numpy()) < 0.01).all()


# --------------------------------------------------------------------------- facts for the prose


def test_grid_facts(tables, raw):
    g = facts.grid(tables.summary)
    assert (g.n_runs, g.n_pairs, g.n_seeds, g.seeds, g.epochs) == (12, 4, 3, "0, 1 and 2", "6")
    assert (g.image_size, g.batch_size, g.lr, g.split) == (96, "32", "0.001", "test")
    assert g.pairs == "MobileNetV2 + Adam, MobileNetV2 + Adamax, MobileNetV1 + Adam and MobileNetV1 + Adamax"
    assert g.devices == ["cpu (2 threads)"] and g.total_time == "0:26:09" and g.example == "mobilenet_v2-adam-s0"
    assert facts.grid(fx.only_seeds(raw, [0])["summary"]).seeds == "0"


def test_best_is_the_mean_over_seeds_or_a_tie(tables, raw):
    best = facts.best(tables.summary)
    runs = tables.summary[tables.summary["cell"].str.startswith("mobilenet_v2-adamax-")]
    mean, half = stats.mean_band(runs["score_f1_macro"])
    assert best.labels == ["MobileNetV2 + Adamax"] and best.f1 == f"{mean:.3f} ± {half:.3f}" == "0.770 ± 0.065"
    assert (best.n_seeds, best.shown) == (3, "MobileNetV2 + Adamax")
    tied = facts.best(fx.tied(raw)["summary"])
    assert len(tied.labels) == 4 and tied.f1 == "0.100" and tied.shown == "MobileNetV1 + Adam"
    assert facts.best(fx.only_seeds(raw, [0])["summary"]).f1 == "0.758"  # one seed: no half-width


def test_setup_as_the_runs_recorded_it(tables):
    assert facts.setup(tables.summary) == facts.Setup(pretrained=False, hflip=True, crop_padding=4)
    tuned = tables.summary.assign(pretrained=True, hflip=False, crop_padding=0)
    assert facts.setup(tuned) == facts.Setup(pretrained=True, hflip=False, crop_padding=0)
    unknown = tables.summary.drop(columns=["pretrained"]).assign(hflip=[True, False] * 6)
    assert facts.setup(unknown) == facts.Setup(pretrained=None, hflip=None, crop_padding=4)


def test_data_facts(tables, raw):
    d = facts.data(tables.dataset_info, tables.dataset)
    assert d.synthetic and d.per_colour == {"train": 120, "val": 40, "test": 40}
    assert (d.adverts, d.advert_level_split, d.image_size, d.skipped_reasons) == ("748", True, 96, [])
    assert d.archives == "`resized_DVM`" and len(d.colours) == 11
    info = dict(tables.dataset_info, synthetic=False, source="dvm", advert_level_split=False,
                skipped={"unreadable": 2, "too_small": 0, "missing_colour": 5}, archives=["/d/a.zip"])
    d = facts.data(info, tables.dataset)
    assert (d.source, d.skipped, d.skipped_reasons) == ("dvm", "7", ["2 unreadable", "5 missing colour"])
    assert d.archives == "`a.zip`" and not d.advert_level_split
    no_test = fx.without_test_split(raw)
    assert facts.data(no_test["dataset.json"], no_test["dataset"]).per_colour == {"train": 120, "val": 40}


def test_what_the_seeds_can_decide(tables, raw):
    s = facts.seeds(tables.summary)
    assert (s.n, round(s.t, 2), round(s.reach, 2), round(s.f), round(s.f10, 1)) == (3, 4.30, 2.48, 39, 4.0)
    one = facts.seeds(fx.only_seeds(raw, [0])["summary"])
    assert one.n == 1 and math.isnan(one.t) and math.isnan(one.f)


def test_lab_facts(lab):
    assert facts.lab(lab) == facts.Lab(n_runs=3, n_grid=4, not_run=["MobileNetV1 + Adamax"],
                                       val_images_per_colour="1,000")
    full = pd.concat([lab, lab.iloc[[0]].assign(arch="mobilenet_v1", optimizer="adamax")])
    assert facts.lab(full).not_run == []


# --------------------------------------------------------------------------- tables


def test_dataset_table(tables):
    df = result_tables.dataset_table(tables.dataset)
    assert list(df.columns) == ["Colour", "Train images", "Train adverts", "Val images", "Val adverts",
                                "Test images", "Test adverts"]
    assert len(df) == 12 and df.iloc[-1]["Train images"] == "1,320" and df.iloc[-1]["Test images"] == "440"
    no_test = tables.dataset[tables.dataset["split"] != "test"]
    assert "Test images" not in result_tables.dataset_table(no_test).columns


def test_quality_and_time_tables(tables, raw):
    q, t = result_tables.quality_table(tables.summary), result_tables.time_table(tables.summary)
    assert list(q["Model + optimizer"]) == list(t["Model + optimizer"]) == [
        "MobileNetV2 + Adam", "MobileNetV2 + Adamax", "MobileNetV1 + Adam", "MobileNetV1 + Adamax"]
    assert "Test macro-F1" in q.columns and q.loc[1, "Test macro-F1"] == "0.770 ± 0.065"
    assert q.loc[0, "Chosen epoch(s)"] == "5, 6, 6"
    assert all(" ± " in v for v in t["Optimizer step (ms)"]) and "Device" not in t.columns
    two = tables.summary.assign(device=["cpu (2 threads)"] * 6 + ["NVIDIA H100 80GB HBM3"] * 6)  # V2 | V1
    assert list(result_tables.time_table(two)["Device"]) == ["cpu (2 threads)"] * 2 + ["NVIDIA H100 80GB HBM3"] * 2
    one_seed = result_tables.quality_table(fx.only_seeds(raw, [0])["summary"])
    assert " ± " not in "".join(one_seed["Test macro-F1"])
    assert "Val macro-F1" in result_tables.quality_table(fx.without_test_split(raw)["summary"]).columns


# --------------------------------------------------------------------------- appendix


def test_run_table_names_every_cell(tables):
    df = appendix.run_table(tables.summary)
    assert list(df["Cell"]) == [fmt.cell_link(c) for c in pairs.ordered_summary(tables.summary)["cell"]]
    assert len(df) == 12 and "Test F1" in df.columns


def test_provenance_tables(tables):
    where, code = appendix.provenance_where(tables.provenance), appendix.provenance_code(tables.provenance)
    first = where.iloc[0]
    assert first["Cell's page"] == "[cells/mobilenet_v2-adam-s0.html](cells/mobilenet_v2-adam-s0.html)"
    assert (first["Started (UTC)"], first["Host"], first["GPU"]) == ("2026-06-17 09:00:00", "lab-node-1", "none")
    assert first["CPU"] == "Intel(R) Xeon(R) Platinum 8480+, 2 cores"
    assert list(code.iloc[0]) == ["`mobilenet_v2-adam-s0`", "`3f1c2a9d0b` (as committed)", "torch 2.14.1+cpu",
                                  "yes", "`make cell CELL=mobilenet_v2-adam-s0`"]
    gpu = tables.provenance.iloc[[0]].assign(gpu_name="NVIDIA H100", gpu_memory_gib=79.6, gpu_driver="570.1",
                                             cuda="12.8", cudnn=91000.0, locked=False, lock_differences="x 1 != 2")
    assert appendix.provenance_where(gpu).iloc[0]["GPU"] == "NVIDIA H100, 79.6 GiB, driver 570.1"
    assert list(appendix.provenance_code(gpu).iloc[0][["Software", "Locked packages"]]) == [
        "torch 2.14.1+cpu, CUDA 12.8, cuDNN 91000", "no: x 1 != 2"]


def test_what_the_runs_shared(tables):
    assert appendix.shared(tables.provenance) == appendix.Shared(
        n_runs=12, hosts=["lab-node-1"], commits=["3f1c2a9d0b"], n_changed=0, locks="all", n_unlocked=0)
    odd = tables.provenance.assign(tracked_changes=[True, False] * 6, locked=[True, False, float("nan")] * 4,
                                   commit=float("nan"), host=float("nan"))
    shared = appendix.shared(odd)
    assert (shared.hosts, shared.commits, shared.n_changed, shared.locks, shared.n_unlocked) == (
        [], [], 6, "some", 4)
    assert appendix.shared(tables.provenance.assign(locked=float("nan"))).locks == "none"
