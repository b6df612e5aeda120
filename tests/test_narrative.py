"""Sentences and tables of the report, on the fixture tables (12 runs: 4 pairs x 3 seeds, with a test
split), on their one-seed cut and on edge cases."""

from __future__ import annotations

import json
import math
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from carcolor.analysis import claims, stats
from carcolor.reporting import narrative as n
from tests.fixtures import make_tables as fx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tables():
    return n.load_tables(FIXTURES)


@pytest.fixture(scope="module")
def one_seed():
    """The fixture grid cut to seed 0, its comparisons recomputed (what `grid.seeds: [0]` gives)."""
    return fx.only_seeds(fx.read_tables(FIXTURES / "tables"), [0])


@pytest.fixture(scope="module")
def lab():
    return n.load_lab(ROOT / "report" / "lab.csv")


def _row(comparisons, claim_id, held_fixed, metric=None):
    rows = comparisons[(comparisons["claim_id"] == claim_id) & (comparisons["held_fixed"] == held_fixed)]
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# --------------------------------------------------------------------------- the fixtures


def test_load_tables(tables):
    assert len(tables.summary) == 12 and n.n_seeds(tables.summary) == 3
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


def test_fixture_has_every_kind_of_verdict(tables, one_seed):
    assert claims.verdict_counts(tables.comparisons) == {"supported": 9, "contradicted": 1, "inconclusive": 4}
    assert set(one_seed["comparisons"]["verdict"]) == {"inconclusive"}
    assert set(one_seed["comparisons"]["n_seeds"]) == {1} and set(one_seed["summary"]["seed"]) == {0}


# --------------------------------------------------------------------------- loading and formatting


def test_missing_table_names_file_and_command(tmp_path):
    shutil.copytree(FIXTURES / "tables", tmp_path / "tables")
    (tmp_path / "tables" / "comparisons.csv").unlink()
    with pytest.raises(n.MissingResultsError) as err:
        n.load_tables(tmp_path)
    assert "comparisons.csv" in str(err.value)
    assert "snakemake --cores all" in str(err.value)
    (tmp_path / "tables" / "dataset.json").unlink()
    shutil.copy(FIXTURES / "tables" / "comparisons.csv", tmp_path / "tables")
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


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.6, "0:01:00"), (5914, "1:38:34"),
                                           (6874, "1:54:34"), (90061, "25:01:01")])
def test_fmt_duration(seconds, text):
    assert n.fmt_duration(seconds) == text


def test_fmt_band():
    assert n.fmt_band(0.81234, 0.0131) == "0.812 ± 0.013"
    assert n.fmt_band(0.81234, math.nan) == "0.812"  # one seed: no half-width
    assert n.fmt_band(math.nan, 0.1) == "–"
    assert n.fmt_band(170.4, 9.2, n.fmt_duration) == "0:02:50 ± 0:00:09"


def test_lab_csv_is_consistent(lab):
    assert len(lab) == 3
    for _, r in lab.iterrows():
        assert n.fmt_duration(r["train_seconds"]) == r["train_time"]
    assert n._lab_row(lab, "mobilenet_v1", "adamax") is None


def test_md_table_alignment_and_caption():
    df = pd.DataFrame({"Cell": ["`a`", "`b`"], "Time": ["0:01:00", "–"], "Note": ["x", "y"],
                       "Estimate": ["−0.1 [−0.2, +0.1]", "+0.3 [+0.1, +0.5]"]})
    md = n.md_table(df, "Caption here.")
    header_rule = md.splitlines()[1]
    assert header_rule.startswith("|:") and header_rule.count("-:|") == 2
    assert md.rstrip().endswith(": Caption here.")


# --------------------------------------------------------------------------- top matter and data


def test_synthetic_note():
    assert "synthetic data" in n.synthetic_note({"source": "synthetic", "synthetic": True})
    assert n.synthetic_note({"source": "dvm", "synthetic": False}) == ""
    assert n.synthetic_note({"source": "synthetic", "synthetic": False}) != ""


def test_grid_facts_are_means_over_seeds(tables):
    f = n.grid_facts(tables.summary)
    assert (f["n_runs"], f["n_pairs"], f["n_seeds"], f["seeds"]) == ("12", "4", "3", "0, 1 and 2")
    assert f["epochs"] == "6" and f["image_size"] == "96" and f["score_split"] == "test"
    assert f["best_label"] == "MobileNetV2 + Adamax"
    runs = tables.summary[tables.summary["cell"].str.startswith("mobilenet_v2-adamax-")]
    mean, half = stats.mean_band(runs["score_f1_macro"])
    assert f["best_f1"] == f"{mean:.3f} ± {half:.3f}" == "0.770 ± 0.065"
    assert f["devices"] == "cpu (2 threads)" and f["best_f1_note"] == "mean over 3 seeds ± 95 % half-width"


def test_protocol_statement():
    test = n.protocol_statement({"protocol": "test", "n_test_per_colour": 40})
    assert "Protocol: an untouched test split" in test and "40 images per colour" in test
    assert "chosen on the *val* split" in test
    lab = n.protocol_statement({"protocol": "val", "n_val_per_colour": 1000})
    assert "Protocol: the lab's" in lab and "1,000 images per colour" in lab and "optimistic" in lab
    assert n.protocol({"n_test_per_colour": 6}) == "test" and n.protocol({"n_val_per_colour": 6}) == "val"
    with pytest.raises(ValueError, match="expected one of test, val"):
        n.protocol({"protocol": "holdout"})


def test_dataset_table_and_facts(tables):
    df = n.dataset_table(tables.dataset)
    assert list(df.columns) == ["Colour", "Train images", "Train adverts", "Val images", "Val adverts",
                                "Test images", "Test adverts"]
    assert len(df) == 12 and df.iloc[-1]["Train images"] == "1,320" and df.iloc[-1]["Test images"] == "440"
    facts = n.dataset_facts(tables.dataset_info, tables.dataset)
    assert "120 for training, 40 for validation (*val*) and 40 for the test split" in facts
    assert "Images skipped:** none" in facts
    info = dict(tables.dataset_info, synthetic=False, source="dvm", advert_level_split=False,
                skipped={"unreadable": 2, "too_small": 0, "missing_colour": 5}, archives=["/d/a.zip"])
    facts = n.dataset_facts(info, tables.dataset)
    assert "DVM-Car (dvm)" in facts and "7 (2 unreadable and 5 missing colour)" in facts
    assert "`a.zip`" in facts and "same side): no" in facts
    no_test = tables.dataset[tables.dataset["split"] != "test"]
    assert "Test images" not in n.dataset_table(no_test).columns


# --------------------------------------------------------------------------- results tables


def test_combos_are_means_with_half_widths(tables):
    c = n.combos(tables.summary)
    assert [(r["arch"], r["optimizer"]) for _, r in c.iterrows()] == [
        ("mobilenet_v2", "adam"), ("mobilenet_v2", "adamax"), ("mobilenet_v1", "adam"), ("mobilenet_v1", "adamax")]
    assert set(c["n_seeds"]) == {3} and c.loc[0, "seeds"] == [0, 1, 2]
    runs = tables.summary[tables.summary["cell"].str.startswith("mobilenet_v1-adam-")]
    mean, half = stats.mean_band(runs["train_epoch_seconds"])
    assert c.loc[2, "train_epoch_seconds"] == pytest.approx(mean)
    assert c.loc[2, "train_epoch_seconds_hw"] == pytest.approx(half)
    assert n.best_pair(tables.summary) == ("mobilenet_v2", "adamax")


def test_quality_and_time_tables(tables):
    q, t = n.quality_table(tables.summary), n.time_table(tables.summary)
    assert list(q["Model + optimizer"]) == list(t["Model + optimizer"]) == [
        "MobileNetV2 + Adam", "MobileNetV2 + Adamax", "MobileNetV1 + Adam", "MobileNetV1 + Adamax"]
    assert "Test macro-F1" in q.columns and q.loc[1, "Test macro-F1"] == "0.770 ± 0.065"
    assert q.loc[0, "Chosen epoch(s)"] == "5, 6, 6"
    assert all(" ± " in v for v in t["Optimizer step (ms)"])
    assert "Device" not in t.columns and n.device_caption(tables.summary) == "All runs on cpu (2 threads)."
    two = tables.summary.assign(device=["cpu (2 threads)", "NVIDIA H100 80GB HBM3"] * 6)
    assert "Device" in n.time_table(two).columns and n.device_caption(two) == ""
    assert "t = 4.30" in n.band_caption(tables.summary)


def test_run_table_names_every_cell(tables):
    df = n.run_table(tables.summary)
    assert list(df["Cell"]) == [f"[`{c}`](cells/{c}.html)" for c in n.cells(tables.summary)]  # linked to its page
    assert len(df) == 12 and "Test F1" in df.columns


def test_timing_breakdown_adds_up(tables):
    """The parts add up to all the time of a run, the test pass included (train_seconds leaves it out)."""
    b = n.timing_breakdown(tables.epochs)
    parts = b[["data_s", "forward_backward_s", "optimizer_s", "other_s", "eval_s"]].sum(axis=1)
    total = tables.epochs.groupby("cell")["seconds"].sum().loc[b["cell"]].to_numpy()
    assert (abs(parts.to_numpy() - total) < 1e-6).all()
    test_s = tables.epochs[tables.epochs["split"] == "test"].groupby("cell")["seconds"].sum()
    assert (abs(total - test_s.loc[b["cell"]].to_numpy()
                - tables.summary.set_index("cell").loc[b["cell"], "train_seconds"].to_numpy()) < 0.01).all()


# --------------------------------------------------------------------------- verdicts on the fixtures


def test_supported_verdict_names_its_numbers(tables):
    text = n.verdict_sentence(_row(tables.comparisons, "adamax-better", "arch=mobilenet_v2"))
    assert text.startswith("*With MobileNetV2, test macro-F1, Adamax − Adam*: **supported**.")
    assert ("Mean difference +0.012, 95 % interval [+0.004, +0.020] over 3 seeds (paired t, n=3): "
            "the whole interval lies above 0, the claim's side.") in text
    assert "Means: Adamax 0.770, Adam 0.758." in text


def test_contradicted_verdict_names_its_numbers(tables):
    text = n.verdict_sentence(_row(tables.comparisons, "adamax-stable-within", "arch=mobilenet_v1"))
    assert "*With MobileNetV1, sd of late val-loss changes, Adamax − Adam*: **contradicted**." in text
    assert ("Mean difference +0.077, 95 % interval [+0.056, +0.098] over 3 seeds (paired t, n=3): "
            "the whole interval lies above 0, against the claim.") in text


def test_inconclusive_verdicts_name_their_numbers(tables):
    text = n.verdict_sentence(_row(tables.comparisons, "adamax-better", "arch=mobilenet_v1"))
    assert "**inconclusive**" in text
    assert ("Mean difference +0.040, 95 % interval [−0.033, +0.114] over 3 seeds (paired t, n=3): "
            "the interval includes 0, so these seeds do not decide.") in text
    text = n.verdict_sentence(_row(tables.comparisons, "adamax-stable-seeds", "arch=mobilenet_v2"))
    assert ("*With MobileNetV2, final val macro-F1 across seeds, var(Adamax) / var(Adam)*: **inconclusive**. "
            "Ratio of variances 0.364, 95 % interval [0.00933, 14.2] over 3 seeds "
            "(F interval on variances, n_a=3, n_b=3): the interval includes 1") in text


def test_ratio_verdict_keeps_enough_decimals(tables):
    text = n.verdict_sentence(_row(tables.comparisons, "adamax-slower", "arch=mobilenet_v1", "train_epoch_seconds"))
    # 1.0018 would print as 1.00×, which reads as touching 1: a third decimal shows it does not
    assert "Ratio 1.034×, 95 % interval [1.002×, 1.067×] over 3 seeds (paired t on log ratios, n=3)" in text
    assert "the whole interval lies above 1, the claim's side. Means: Adamax 15.94 s, Adam 15.42 s." in text


def test_verdicts_cover_every_row_grouped_by_claim(tables):
    text = n.verdicts(tables.comparisons)
    for _, r in tables.comparisons.iterrows():
        assert n.verdict_key(r).split(": ")[0] in text
    assert text.count("\n- ") + text.startswith("- ") == len(tables.comparisons)
    for claim in claims.CLAIMS:
        assert f"**{claim.claim}.**" in text
    assert "Not answered" not in text
    assert n.verdict_summary(tables.comparisons) == (
        "Of the 14 comparisons, 9 are supported, 1 contradicted and 4 inconclusive.")


def test_verdict_summary_says_is_for_one_supported_comparison(tables):
    one = tables.comparisons.assign(verdict=["supported"] + ["inconclusive"] * (len(tables.comparisons) - 1))
    assert n.verdict_summary(one).startswith(f"Of the {len(one)} comparisons, 1 is supported, 0 contradicted")


def test_verdict_table(tables):
    df = n.verdict_table(tables.comparisons)
    assert list(df.columns) == ["Claim", "Metric", "Held fixed", "Seeds", "Estimate [95 % CI]", "Verdict"]
    assert len(df) == len(tables.comparisons)
    first = df.iloc[0]
    assert first["Claim"] == "Adamax trains more stably than Adam (within a run)" and df.iloc[1]["Claim"] == ""
    assert (first["Held fixed"], first["Seeds"], first["Verdict"]) == ("MobileNetV2", "3", "supported")
    assert first["Estimate [95 % CI]"] == "−0.076 [−0.112, −0.040]"
    assert set(df["Verdict"]) == {"supported", "contradicted", "inconclusive"}


def test_evidence_rule_and_stability_name_the_quantiles(tables):
    rule = n.evidence_rule(tables.summary)
    assert "**3 seeds** per pair" in rule and "= 4.30" in rule and "2.48 standard deviations" in rule
    assert "**supported** when the whole 95 % interval lies on the claim's side of 0 (or of ratio 1)" in rule
    text = n.stability_text(tables.summary)
    assert "*Within a run*" in text and "*Across seeds*" in text
    assert "spans a factor of 39 each way" in text and "below 1/39 or above 39" in text
    assert "with 10 seeds per side the factor would still be 4.0" in text


def test_timing_text_sets_lab_ratios_beside_ours(tables, lab):
    text = n.timing_text(tables.comparisons, lab)
    assert "shared a machine" in text and "noise" in text
    assert ("*With MobileNetV2, Adamax / Adam:* training pass per epoch 1.05× [1.01×, 1.08×], supported; "
            "optimizer step 1.40× [1.33×, 1.47×], supported (over 3 seeds). "
            "Lab, total training time: 1:54:34 / 1:38:34 = 1.16×.") in text
    assert "*With Adam, MobileNetV1 / MobileNetV2:*" in text and "1:11:21 / 1:38:34 = 0.72×" in text
    assert "the lab did not run MobileNetV1 + Adamax" in text


# --------------------------------------------------------------------------- one seed


def test_one_seed_every_verdict_is_inconclusive_and_says_why(one_seed):
    comparisons = one_seed["comparisons"]
    for _, r in comparisons.iterrows():
        text = n.verdict_sentence(r)
        assert "**inconclusive: one seed**" in text, text
        assert ("one seed cannot show how much" in text) or ("at least two seeds on each side" in text), text
    text = n.verdict_sentence(_row(comparisons, "adamax-better", "arch=mobilenet_v2"))
    assert "With one seed Adamax − Adam was +0.015" in text and "no interval and no verdict" in text
    assert set(n.verdict_table(comparisons)["Verdict"]) == {"inconclusive: one seed"}
    assert set(n.verdict_table(comparisons)["Estimate [95 % CI]"]) >= {"+0.015 (no interval)", "–"}
    assert n.verdict_summary(comparisons) == (
        "All 14 comparisons are inconclusive: with one seed there is no interval to decide by.")


def test_one_seed_method_text_and_tables(one_seed, lab):
    summary = one_seed["summary"]
    assert "**one seed** per pair" in n.evidence_rule(summary) and "inconclusive: one seed" in n.evidence_rule(summary)
    assert "With one seed neither can be decided" in n.stability_text(summary)
    assert n.band_caption(summary) == "One seed per pair: single values, no interval."
    assert " ± " not in "".join(n.quality_table(summary)["Test macro-F1"])
    assert n.grid_facts(summary)["seeds_phrase"] == "one seed"
    assert ("*With MobileNetV2, Adamax / Adam:* training pass per epoch 1.04×; optimizer step 1.42× "
            "(one seed: no interval, so inconclusive: one seed).") in n.timing_text(one_seed["comparisons"], lab)
    assert n.grid_facts(summary)["best_f1_note"] == "one seed, no interval"


# --------------------------------------------------------------------------- partial grids and edge cases


def test_grid_without_mobilenet_v1(tables):
    keep = tables.summary["arch"] == "mobilenet_v2"
    comparisons = claims.comparisons(tables.summary[keep].drop(columns="val_loss_change_sd"),
                                     tables.epochs[tables.epochs["arch"] == "mobilenet_v2"])
    text = n.verdicts(comparisons)
    assert ("Not answered by this grid, which lacks one side of each: MobileNetV1 is less accurate than "
            "MobileNetV2 and MobileNetV1 is faster than MobileNetV2.") in text
    assert "With MobileNetV1" not in text
    none = comparisons.iloc[0:0]
    assert n.verdict_summary(none).startswith("This grid has no two pairs of runs")
    assert len(n.verdict_table(none)) == 0 and "Not answered" in n.verdicts(none)


def test_variance_of_identical_seeds_has_no_interval(tables):
    row = _row(tables.comparisons, "adamax-stable-seeds", "arch=mobilenet_v2").copy()
    row[["estimate", "low", "high"]] = math.nan
    row["method"] = "F interval on variances, n_a=3, n_b=3: both variances are 0, inconclusive"
    row["verdict"] = "inconclusive"
    text = n.verdict_sentence(row)
    assert "**inconclusive**. No interval (F interval on variances, n_a=3, n_b=3: both variances are 0" in text


def test_lab_facts(lab):
    assert n.lab_facts(lab) == {"n_runs": "3", "n_grid": "4", "not_run": "MobileNetV1 + Adamax",
                                "val_images_per_colour": "1,000"}
    full = pd.concat([lab, lab.iloc[[0]].assign(arch="mobilenet_v1", optimizer="adamax")])
    assert n.lab_facts(full)["not_run"] == "none"


def test_how_made(tables):
    text = n.how_made("pandoc 3.9 + Typst 0.15 (offline fallback)", tables.summary, today=date(2025, 1, 2))
    assert "pandoc 3.9 + Typst 0.15 (offline fallback)" in text
    assert "2025-01-02" in text and "cpu (2 threads)" in text and "comparisons.csv" in text


def test_dataset_json_round_trips(tmp_path, one_seed):
    folder = fx.write_tables(one_seed, tmp_path / "tables")
    assert json.loads((folder / "dataset.json").read_text())["protocol"] == "test"
    assert len(n.load_tables(tmp_path).summary) == 4
