"""carcolor compare on the fixture tables (fast): the statistics, the setup, bitwise, the verdicts,
different grids, and broken or foreign archives in one line."""
import json
import math
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from carcolor import command
from carcolor.analysis import stats
from carcolor.reproduction import agreement, compare, crate, runs, setup
from tests.flow import REPO

FIXTURE = REPO / "tests" / "fixtures" / "tables"


# --------------------------------------------------------------------------- statistics


def test_welch_difference_is_scipys_welch_interval():
    a, b = [0.61, 0.66, 0.70, 0.64], [0.58, 0.69, 0.55]
    got = stats.welch_difference(a, b, confidence=0.90)
    ci = sp.ttest_ind(a, b, equal_var=False).confidence_interval(0.90)
    assert got["estimate"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high))
    assert got["n_a"], got["n_b"] == (4, 3)


def test_welch_without_spread_or_with_one_seed():
    same = stats.welch_difference([0.5, 0.5], [0.4, 0.4])
    assert same["low"] == same["high"] == pytest.approx(0.1)
    one = stats.welch_difference([0.5], [0.4, 0.45])
    assert math.isnan(one["low"]) and stats.equivalence(one["low"], one["high"], lower=-1, upper=1) == "inconclusive"


def test_welch_ratio_inverts_when_the_sides_swap():
    a, b = [10.0, 12.0, 11.0], [20.0, 19.0, 23.0]
    ab, ba = stats.welch_ratio(a, b), stats.welch_ratio(b, a)
    assert ab["estimate"] == pytest.approx(1 / ba["estimate"])
    assert (ab["low"], ab["high"]) == pytest.approx((1 / ba["high"], 1 / ba["low"]))
    with pytest.raises(ValueError, match="positive"):
        stats.welch_ratio([1.0, 0.0], [1.0, 2.0])


@pytest.mark.parametrize("low, high, verdict", [(-0.01, 0.02, "reproduced"), (0.06, 0.2, "not reproduced"),
                                                (-0.3, -0.1, "not reproduced"), (0.0, 0.08, "inconclusive"),
                                                (-0.05, 0.05, "reproduced"), (math.nan, 0.0, "inconclusive")])
def test_equivalence_rule(low, high, verdict):
    assert stats.equivalence(low, high, lower=-0.05, upper=0.05) == verdict


def test_equivalence_needs_ordered_margins():
    with pytest.raises(ValueError, match="margins out of order"):
        stats.equivalence(0, 0, lower=0.1, upper=-0.1)


# --------------------------------------------------------------------------- runs made from the fixture


def results(tmp_path, name="results", edit=None):
    """A results folder with the fixture tables; edit(tables dict) changes them before they are written."""
    folder = tmp_path / name / "results"
    shutil.copytree(FIXTURE, folder / "tables")
    if edit:
        frames = {p.stem: pd.read_csv(p) for p in (folder / "tables").glob("*.csv")}
        edit(frames)
        for stem, frame in frames.items():
            frame.to_csv(folder / "tables" / f"{stem}.csv", index=False)
    return folder


def verdicts(ref, cand, margin=None):
    a, b = runs.load(ref), runs.load(cand)
    return agreement.agreement(a, b, agreement.common_cells(a, b), margin or compare.margins())


def test_a_run_against_itself_is_reproduced_everywhere(tmp_path):
    table = verdicts(results(tmp_path, "a"), results(tmp_path, "b"))
    assert set(table["verdict"]) == {"reproduced"}
    assert (table["low"] == table["high"]).all()


def test_one_pair_shifted_beyond_the_margin_is_not_reproduced_for_that_pair_only(tmp_path):
    def shift(t):
        rows = (t["summary"]["arch"] == "mobilenet_v1") & (t["summary"]["optimizer"] == "adam")
        t["summary"].loc[rows, "score_f1_macro"] -= 0.3

    table = verdicts(results(tmp_path, "a"), results(tmp_path, "b", shift))
    f1 = table[table["metric"] == "macro-F1"].set_index(["arch", "optimizer"])["verdict"]
    assert f1[("mobilenet_v1", "adam")] == "not reproduced"
    assert (f1.drop(("mobilenet_v1", "adam")) == "reproduced").all()


def test_noise_within_the_seed_spread_is_never_not_reproduced(tmp_path):
    rng = np.random.default_rng(0)

    def noise(t):
        s = t["summary"]
        spread = s.groupby(["arch", "optimizer"])["score_f1_macro"].transform("std")
        s["score_f1_macro"] += rng.normal(0, 1, len(s)) * spread
        s["train_epoch_seconds"] *= rng.uniform(0.9, 1.1, len(s))

    table = verdicts(results(tmp_path, "a"), results(tmp_path, "b", noise))
    assert "not reproduced" not in set(table["verdict"])
    assert "inconclusive" in set(table[table["metric"] == "macro-F1"]["verdict"])


def test_different_grids_one_line_each_and_only_what_both_have_is_compared(tmp_path):
    def smaller(t):
        for name in ("summary", "epochs", "per_class", "confusion"):
            t[name] = t[name][~t[name]["cell"].str.endswith("-s2")]
        t["per_class"] = t["per_class"][t["per_class"]["colour"] != "Orange"]

    a, b = runs.load(results(tmp_path, "a")), runs.load(results(tmp_path, "b", smaller))
    b.dataset = {**b.dataset, "colours": [c for c in b.dataset["colours"] if c != "Orange"], "n_test_per_colour": 9}
    lines = agreement.grid_differences(a, b)
    gone = [c for c in a.cells if c.endswith("-s2")]
    assert lines == [f"cell {c} is only in the reference" for c in gone] + [
        "colour Orange is only in the reference", f"data: n_test_per_colour is {a.dataset['n_test_per_colour']} "
        "in the reference, 9 in the candidate"]
    table = agreement.agreement(a, b, agreement.common_cells(a, b), compare.margins())
    assert set(table["n_reference"]) == {len(set(b.tables["summary"]["seed"]))}
    assert "Orange" not in set(table["colour"])


def test_bitwise_names_the_first_difference(tmp_path):
    def nudge(t):
        t["epochs"].loc[5, "f1_macro"] += 1e-9
        t["epochs"].loc[3, "seconds"] += 1  # a time: never a difference

    a, b = runs.load(results(tmp_path, "a")), runs.load(results(tmp_path, "b", nudge))
    same = agreement.bitwise(a, a, a.cells, whole=True)
    assert same["difference"] is None and "dataset.json" in same["tables"]
    found = agreement.bitwise(a, b, a.cells, whole=True)["difference"]
    row = b.tables["epochs"].loc[5]
    assert found["table"] == "epochs.csv" and found["column"] == "f1_macro"
    assert found["row"] == f"cell={row['cell']}, epoch={row['epoch']}, split={row['split']}"
    assert float(found["candidate"]) - float(found["reference"]) == pytest.approx(1e-9)


def _recorded(run, cpu="Intel(R) Xeon(R) Processor", lr=0.002, numpy="2.4.6"):
    for cell in run.cells:
        run.summaries[cell] = {"config": {"arch": "x", "seed": 0, "lr": lr, "epochs": 5}, "torch": "2.14.1",
                               "device": "cpu (1 thread)", "threads": 1, "identity": {"data": "d1", "code": "c1"}}
        run.provenance[cell] = {"cpu": {"model": cpu}, "git_commit": "abc", "python": "3.11.7", "host": "vm",
                                "packages": {"numpy": numpy, "pandas": "3.1.1", "torch": "2.14.1"}}
    return run


def test_setup_names_what_differs_and_whether_it_decides_the_numbers(tmp_path):
    a = _recorded(runs.load(results(tmp_path, "a")))
    b = _recorded(runs.load(results(tmp_path, "b")), cpu="AMD EPYC 7B13", lr=0.001, numpy="2.5.0")
    table = setup.compare(a, b, a.cells)
    rows = table.drop_duplicates("aspect").set_index("aspect")
    assert not rows.loc["CPU model", "same"] and rows.loc["CPU model", "decides"]
    assert (rows.loc["settings", "reference"], rows.loc["settings", "candidate"]) == ("lr=0.002", "lr=0.001")
    assert (rows.loc["other packages", "reference"], rows.loc["other packages", "candidate"]) == (
        "numpy=2.4.6", "numpy=2.5.0")
    assert not rows.loc["other packages", "decides"] and rows.loc["torch", "same"]
    assert not any(setup.same_where_it_matters(table).values())
    assert all(setup.same_where_it_matters(setup.compare(a, a, a.cells)).values())


def test_compare_writes_the_tables_the_page_reads(tmp_path):
    summary = compare.compare(results(tmp_path, "a"), results(tmp_path, "b"), tmp_path / "out", compare.margins())
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"comparison.csv", "setup.csv", "claims.csv",
                                                             "curves.csv", "compare.json"}
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["verdicts"] == summary["verdicts"]
    assert summary["claims_changed"] == 0 and summary["grid"] == []
    assert summary["bitwise"]["status"] == "not expected"  # the fixture records no setup: nothing to vouch for
    assert any(line.startswith("agreement: ") for line in compare.lines(summary))


def test_margins_come_from_the_defaults_and_a_file_may_replace_them(tmp_path):
    assert compare.margins()["f1_margin"] > 0
    mine = tmp_path / "mine.yaml"
    mine.write_text("reproduction:\n  f1_margin: 0.02\n")
    assert compare.margins(mine)["f1_margin"] == 0.02
    mine.write_text("reproduction:\n  f1_margn: 0.02\n")
    with pytest.raises(ValueError, match="f1_margn.*valid keys: f1_margin"):
        compare.margins(mine)


# --------------------------------------------------------------------------- broken or foreign archives


def _zip(path, files: dict):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


FOREIGN = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
    {"@id": crate.METADATA, "about": {"@id": "./"}}, {"@id": "./", "mainEntity": {"@id": "main.cwl"}},
    {"@id": "main.cwl", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"], "name": "other"}]}


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("no zip"), "not a zip archive"),
    (lambda p: _zip(p, {"results/tables/summary.csv": "cell\n"}), f"no {crate.METADATA}"),
    (lambda p: _zip(p, {crate.METADATA: json.dumps(FOREIGN)}), "describes another crate"),
    (lambda p: _zip(p, {crate.METADATA: "{"}), "is not JSON"),
])
def test_a_broken_or_foreign_archive_is_one_line_and_exit_2(tmp_path, capsys, make, says):
    archive = tmp_path / "run.zip"
    make(archive)
    assert command.main("carcolor.reproduction.compare", [str(archive), str(results(tmp_path)), "--no-page",
                                                          "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(archive) in err and says in err


def test_a_damaged_file_fails_its_checksum(tmp_path):
    folder = tmp_path / "unpacked"
    folder.mkdir()
    (folder / crate.CHECKSUMS).write_text("0" * 64 + "  results/tables/summary.csv\n")
    shutil.copytree(FIXTURE, folder / "results" / "tables")
    with pytest.raises(runs.BrokenRun, match="summary.csv does not match its checksum"):
        runs.verify(runs.open_source(folder))
