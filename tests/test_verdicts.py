"""The lab's claims as the report shows them (carcolor.reporting.verdicts), read from comparisons.csv of the
fixture grid (3 seeds: every kind of verdict), of its one-seed cut and of partial grids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from carcolor.analysis import claims
from carcolor.reporting import results, verdicts
from tests.fixtures import make_tables as fx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def comparisons():
    return results.load_tables(FIXTURES).comparisons


@pytest.fixture(scope="module")
def one_seed():
    """The comparisons of the fixture grid cut to seed 0 (what `grid.seeds: [0]` gives)."""
    return fx.only_seeds(fx.read_tables(FIXTURES / "tables"), [0])["comparisons"]


@pytest.fixture(scope="module")
def lab():
    return results.load_lab(ROOT / "report" / "lab.csv")


def _row(comparisons, claim_id, held_fixed, metric=None):
    rows = comparisons[(comparisons["claim_id"] == claim_id) & (comparisons["held_fixed"] == held_fixed)]
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _parts(v: verdicts.Verdict) -> tuple:
    return (v.case, v.label, v.kind, v.n, v.estimate, v.low, v.high, v.method, v.threshold, v.claim_side,
            v.other_side)


def test_supported_difference(comparisons):
    v = verdicts.verdict(_row(comparisons, "adamax-better", "arch=mobilenet_v2"))
    assert (v.held, v.metric, v.contrast) == ("MobileNetV2", "test macro-F1", "Adamax − Adam")
    assert _parts(v) == ("decided", "supported", "difference", 3, "+0.012", "+0.004", "+0.020", "paired t, n=3",
                         "0", "above 0", "below 0")
    assert v.means == "Adamax 0.770, Adam 0.758" and v.interval == "+0.012 [+0.004, +0.020]"


def test_contradicted_difference(comparisons):
    v = verdicts.verdict(_row(comparisons, "adamax-stable-within", "arch=mobilenet_v1"))
    assert (v.held, v.metric, v.verdict) == ("MobileNetV1", "sd of late val-loss changes", "contradicted")
    assert (v.estimate, v.low, v.high, v.claim_side, v.other_side) == ("+0.077", "+0.056", "+0.098", "below 0",
                                                                       "above 0")


def test_inconclusive_difference_and_variance_ratio(comparisons):
    v = verdicts.verdict(_row(comparisons, "adamax-better", "arch=mobilenet_v1"))
    assert (v.verdict, v.estimate, v.low, v.high) == ("inconclusive", "+0.040", "−0.033", "+0.114")
    v = verdicts.verdict(_row(comparisons, "adamax-stable-seeds", "arch=mobilenet_v2"))
    assert (v.metric, v.contrast) == ("final val macro-F1 across seeds", "var(Adamax) / var(Adam)")
    assert _parts(v) == ("decided", "inconclusive", "variance", 3, "0.364", "0.00933", "14.2",
                         "F interval on variances, n_a=3, n_b=3", "1", "below 1", "above 1")
    assert v.means == ""  # two variances have no means to show


def test_ratio_keeps_enough_decimals(comparisons):
    v = verdicts.verdict(_row(comparisons, "adamax-slower", "arch=mobilenet_v1", "train_epoch_seconds"))
    # 1.0018 would print as 1.00×, which reads as touching 1: a third decimal shows it does not
    assert (v.estimate, v.low, v.high, v.verdict) == ("1.034×", "1.002×", "1.067×", "supported")
    assert v.means == "Adamax 15.94 s, Adam 15.42 s" and v.method == "paired t on log ratios, n=3"
    v = verdicts.verdict(_row(comparisons, "adamax-slower", "arch=mobilenet_v2", "optimizer_step_ms"))
    assert v.means == "Adamax 34.8 ms, Adam 24.9 ms"


def test_grouped_by_claim_in_the_table_order(comparisons):
    grouped = verdicts.by_claim(comparisons)
    assert [claim for claim, _ in grouped] == list(dict.fromkeys(c.claim for c in claims.CLAIMS))
    assert sum(len(rows) for _, rows in grouped) == len(comparisons) == 14
    assert verdicts.unanswered_claims(comparisons) == []
    assert verdicts.by_claim(comparisons, "val")[2][1][0].metric == "val macro-F1"


def test_counts(comparisons, one_seed):
    assert verdicts.counts(comparisons) == verdicts.Counts(total=14, supported=9, contradicted=1, inconclusive=4,
                                                           one_seed=False)
    assert verdicts.counts(one_seed) == verdicts.Counts(total=14, supported=0, contradicted=0, inconclusive=14,
                                                        one_seed=True)
    assert verdicts.counts(comparisons.iloc[0:0]).total == 0 and not verdicts.counts(comparisons.iloc[0:0]).one_seed


def test_verdict_table(comparisons):
    df = verdicts.verdict_table(comparisons)
    assert list(df.columns) == ["Claim", "Metric", "Held fixed", "Seeds", "Estimate [95 % CI]", "Verdict"]
    assert len(df) == len(comparisons)
    first = df.iloc[0]
    assert first["Claim"] == "Adamax trains more stably than Adam (within a run)" and df.iloc[1]["Claim"] == ""
    assert (first["Held fixed"], first["Seeds"], first["Verdict"]) == ("MobileNetV2", "3", "supported")
    assert first["Estimate [95 % CI]"] == "−0.076 [−0.112, −0.040]"
    assert set(df["Verdict"]) == {"supported", "contradicted", "inconclusive"}


def test_time_comparisons_beside_the_lab(comparisons, lab):
    times = verdicts.time_comparisons(comparisons, lab)
    assert [(t.held, t.contrast, t.n) for t in times] == [
        ("MobileNetV2", "Adamax / Adam", 3), ("MobileNetV1", "Adamax / Adam", 3),
        ("Adam", "MobileNetV1 / MobileNetV2", 3), ("Adamax", "MobileNetV1 / MobileNetV2", 3)]
    v2 = times[0]
    assert [(v.metric, v.interval, v.label) for v in v2.rows] == [
        ("training pass per epoch", "1.05× [1.01×, 1.08×]", "supported"),
        ("optimizer step", "1.40× [1.33×, 1.47×]", "supported")]
    assert (v2.lab_ratio, v2.lab_missing) == ("1:54:34 / 1:38:34 = 1.16×", [])
    assert times[2].lab_ratio == "1:11:21 / 1:38:34 = 0.72×"
    assert (times[1].lab_ratio, times[1].lab_missing) == ("", ["MobileNetV1 + Adamax"])


# --------------------------------------------------------------------------- one seed and partial grids


def test_one_seed_has_no_verdict_and_says_which_case(one_seed, lab):
    found = [verdicts.verdict(r) for _, r in one_seed.iterrows()]
    assert {v.label for v in found} == {verdicts.ONE_SEED}
    assert {v.case for v in found} == {"one seed", "one seed, spread"}
    assert all((v.case == "one seed, spread") == (v.kind == "variance") for v in found)
    v = verdicts.verdict(_row(one_seed, "adamax-better", "arch=mobilenet_v2"))
    assert (v.contrast, v.estimate, v.low) == ("Adamax − Adam", "+0.015", "–")
    table = verdicts.verdict_table(one_seed)
    assert set(table["Verdict"]) == {verdicts.ONE_SEED}
    assert set(table["Estimate [95 % CI]"]) >= {"+0.015 (no interval)", "–"}
    first = verdicts.time_comparisons(one_seed, lab)[0]
    assert first.n == 1 and [v.estimate for v in first.rows] == ["1.04×", "1.42×"]


def test_grid_without_mobilenet_v1(comparisons):
    tables = fx.read_tables(FIXTURES / "tables")
    v2 = fx.only_pairs(tables, [("mobilenet_v2", "adam"), ("mobilenet_v2", "adamax")])["comparisons"]
    assert verdicts.unanswered_claims(v2) == ["MobileNetV1 is less accurate than MobileNetV2",
                                              "MobileNetV1 is faster than MobileNetV2"]
    assert {v.held for _, rows in verdicts.by_claim(v2) for v in rows} == {"MobileNetV2"}
    none = comparisons.iloc[0:0]
    assert len(verdicts.verdict_table(none)) == 0 and verdicts.by_claim(none) == []
    assert len(verdicts.unanswered_claims(none)) == 6  # every claim of claims.CLAIMS


def test_variance_of_identical_seeds_has_no_interval(comparisons):
    row = _row(comparisons, "adamax-stable-seeds", "arch=mobilenet_v2").copy()
    row[["estimate", "low", "high"]] = math.nan
    row["method"] = "F interval on variances, n_a=3, n_b=3: both variances are 0, inconclusive"
    row["verdict"] = "inconclusive"
    v = verdicts.verdict(row)
    assert (v.case, v.label, v.estimate, v.interval) == ("no interval", "inconclusive", "–", "–")
