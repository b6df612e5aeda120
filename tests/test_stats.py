"""Small-sample statistics: hand-computed intervals, the verdict rule and the within-run spread."""
import math

import numpy as np
import pandas as pd
import pytest

from carcolor.analysis import stats
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446}  # Student t quantiles, from printed tables


def test_t_interval_on_differences_1_2_3():
    r = stats.paired_difference([1, 2, 3], [0, 0, 0])
    half = T_975[2] * 1 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert half == pytest.approx(2.484138, abs=1e-6)
    assert (r["n"], r["mean_a"], r["mean_b"], r["estimate"]) == (3, 2.0, 0.0, 2.0)
    assert r["low"] == pytest.approx(-0.484138, abs=1e-6)
    assert r["high"] == pytest.approx(4.484138, abs=1e-6)
    assert r["method"] == "paired t, n=3"


def test_t_interval_four_seeds_and_pairing_order():
    # differences [0.5, 1.5, 1.0, 2.0]: mean 1.25, sd sqrt(1.25 / 3)
    r = stats.paired_difference([1.5, 2.5, 3.0, 2.0], [1.0, 1.0, 2.0, 0.0])
    half = T_975[3] * math.sqrt(1.25 / 3) / 2
    assert r["estimate"] == pytest.approx(1.25)
    assert (r["low"], r["high"]) == pytest.approx((1.25 - half, 1.25 + half), abs=1e-6)
    assert r["low"] == pytest.approx(0.22287, abs=1e-5)
    # the same values unpaired would be far noisier: the pairing must be by position
    swapped = stats.paired_difference([1.5, 2.5, 3.0, 2.0], [2.0, 0.0, 1.0, 1.0])
    assert swapped["high"] - swapped["low"] > r["high"] - r["low"]


def test_confidence_level_changes_the_width():
    r90 = stats.paired_difference([1, 2, 3], [0, 0, 0], confidence=0.90)
    assert r90["high"] - 2 == pytest.approx(2.919986 / math.sqrt(3), abs=1e-6)  # t_{0.95,2}
    with pytest.raises(ValueError, match="95"):
        stats.paired_difference([1, 2], [0, 0], confidence=95)


def test_all_equal_differences_give_a_zero_width_interval():
    r = stats.paired_difference([0.3, 0.4, 0.5], [0.2, 0.3, 0.4])  # 0.1 each, up to float rounding
    assert r["low"] == r["high"] == r["estimate"] == pytest.approx(0.1)
    assert r["method"] == "paired t, n=3"
    z = stats.paired_difference([0.7, 0.7, 0.7], [0.7, 0.7, 0.7])
    assert (z["low"], z["estimate"], z["high"]) == (0.0, 0.0, 0.0)


def test_one_seed_has_no_interval_and_no_error():
    r = stats.paired_difference([0.8], [0.75])
    assert r["n"] == 1 and r["estimate"] == pytest.approx(0.05)
    assert math.isnan(r["low"]) and math.isnan(r["high"])
    assert r["method"] == "one seed: no interval"
    assert stats.verdict(r["low"], r["high"], expect=">0") == "inconclusive"


def test_pairs_with_a_nan_are_dropped():
    r = stats.paired_difference([1, np.nan, 3, 4], [0, 0, np.nan, 1])  # pairs (1, 0) and (4, 1)
    assert r["n"] == 2 and r["mean_a"] == 2.5 and r["mean_b"] == 0.5 and r["estimate"] == 2.0
    assert (r["low"], r["high"]) == pytest.approx((2 - T_975[1], 2 + T_975[1]), abs=1e-5)
    assert r["method"] == "paired t, n=2"
    none = stats.paired_difference([np.nan], [1.0])
    assert none["n"] == 0 and math.isnan(none["estimate"]) and "no complete pairs" in none["method"]


def test_unequal_lengths_are_an_error_naming_them():
    with pytest.raises(ValueError, match="3 and 2"):
        stats.paired_difference([1, 2, 3], [1, 2])


def test_bootstrap_from_20_pairs_on_and_reproducible():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 25), np.zeros(25)
    r = stats.paired_difference(a, b)
    assert r["method"] == "paired percentile bootstrap, n=25, 10000 resamples"
    assert r["low"] < a.mean() < r["high"]
    t_half = stats.paired_difference(a[:19], b[:19])
    assert t_half["method"] == "paired t, n=19"
    assert stats.paired_difference(a, b) == r  # fixed seed: same table, same interval


def test_ratio_interval_exactly_two_has_zero_width():
    r = stats.ratio_interval([2, 4], [1, 2])
    assert (r["estimate"], r["low"], r["high"]) == (2.0, 2.0, 2.0)
    assert (r["mean_a"], r["mean_b"], r["n"]) == (3.0, 1.5, 2)
    assert r["method"] == "paired t on log ratios, n=2"
    assert stats.verdict(r["low"], r["high"], expect=">1") == "supported"


def test_ratio_interval_is_a_t_interval_on_log_ratios():
    r = stats.ratio_interval([2, 8], [1, 2])  # ratios 2 and 4
    mean_log = (math.log(2) + math.log(4)) / 2
    half = T_975[1] * (math.log(4) - math.log(2)) / math.sqrt(2) / math.sqrt(2)
    assert r["estimate"] == pytest.approx(math.sqrt(8))  # geometric mean, not (2 + 4) / 2
    assert r["low"] == pytest.approx(math.exp(mean_log - half), rel=1e-5)
    assert r["high"] == pytest.approx(math.exp(mean_log + half), rel=1e-5)
    assert r["mean_a"] == 5.0 and r["mean_b"] == 1.5


def test_ratio_interval_one_seed_and_bad_values():
    r = stats.ratio_interval([3.0], [2.0])
    assert r["estimate"] == pytest.approx(1.5) and math.isnan(r["low"]) and math.isnan(r["high"])
    with pytest.raises(ValueError, match="-1.0"):
        stats.ratio_interval([2.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="side b has 0.0"):
        stats.ratio_interval([2.0, 1.0], [1.0, 0.0])


def test_variance_ratio_against_the_closed_form_f22():
    # F(2, 2) has cdf x / (1 + x), so its q quantile is q / (1 - q): 39 at 0.975, 1/39 at 0.025
    r = stats.variance_ratio([1, 2, 3], [1, 3, 5])  # variances 1 and 4
    assert (r["var_a"], r["var_b"], r["estimate"]) == (1.0, 4.0, 0.25)
    assert r["low"] == pytest.approx(0.25 / 39) and r["high"] == pytest.approx(0.25 * 39)
    assert r["method"] == "F interval on variances, n_a=3, n_b=3"
    assert (r["mean_a"], r["mean_b"]) == (2.0, 3.0)
    r90 = stats.variance_ratio([1, 2, 3], [1, 3, 5], confidence=0.90)
    assert (r90["low"], r90["high"]) == pytest.approx((0.25 / 19, 0.25 * 19))


def test_variance_ratio_unequal_seeds_closed_form_f24():
    # F(2, d2) has cdf 1 - (1 + 2x / d2) ** (-d2 / 2), so its q quantile is d2 / 2 * ((1 - q) ** (-2 / d2) - 1)
    r = stats.variance_ratio([1, 2, 3], [0, 1, 2, 3, 4])  # variances 1 and 2.5, df 2 and 4
    f_hi, f_lo = 2 * (0.025 ** -0.5 - 1), 2 * (0.975 ** -0.5 - 1)
    assert (f_hi, f_lo) == pytest.approx((10.649111, 0.025479), abs=1e-6)
    assert r["estimate"] == pytest.approx(0.4) and (r["n_a"], r["n_b"], r["n"]) == (3, 5, 3)
    assert (r["low"], r["high"]) == pytest.approx((0.4 / f_hi, 0.4 / f_lo))


def test_variance_ratio_closed_form_f11():
    # F(1, 1): sqrt(F) is |Cauchy|, so its q quantile is tan(pi q / 2) ** 2
    r = stats.variance_ratio([0, 2], [0, 1])  # variances 2 and 0.5
    f_hi = math.tan(math.pi * 0.975 / 2) ** 2
    assert r["estimate"] == 4.0
    assert (r["low"], r["high"]) == pytest.approx((4 / f_hi, 4 * f_hi))


def test_variance_ratio_degenerate_cases():
    one = stats.variance_ratio([0.8], [0.7, 0.75])
    assert math.isnan(one["estimate"]) and math.isnan(one["low"]) and "fewer than 2 seeds" in one["method"]
    zeros = stats.variance_ratio([0.5, 0.5, 0.5], [0.7, 0.7, 0.7])
    assert math.isnan(zeros["estimate"]) and "both variances are 0" in zeros["method"]
    assert stats.verdict(zeros["low"], zeros["high"], expect="<1") == "inconclusive"
    steady = stats.variance_ratio([0.5, 0.5, 0.5], [0.6, 0.7, 0.8])
    assert (steady["estimate"], steady["low"], steady["high"]) == (0.0, 0.0, 0.0)
    dropped = stats.variance_ratio([1, 2, np.nan, 3], [1, 3, 5])
    assert dropped["n_a"] == 3 and dropped["estimate"] == 0.25


@pytest.mark.parametrize("low, high, expect, want", [
    (-2.0, -0.5, "<0", "supported"), (0.5, 2.0, "<0", "contradicted"), (-1.0, 1.0, "<0", "inconclusive"),
    (0.5, 2.0, ">0", "supported"), (-2.0, -0.5, ">0", "contradicted"), (-1.0, 1.0, ">0", "inconclusive"),
    (0.5, 0.9, "<1", "supported"), (1.1, 1.5, "<1", "contradicted"), (0.9, 1.1, "<1", "inconclusive"),
    (1.1, 1.5, ">1", "supported"), (0.5, 0.9, ">1", "contradicted"), (0.9, 1.1, ">1", "inconclusive"),
    # boundaries: touching the threshold is not strictly on a side
    (0.0, 0.0, ">0", "inconclusive"), (0.0, 0.0, "<0", "inconclusive"), (0.0, 1.0, ">0", "inconclusive"),
    (-1.0, 0.0, "<0", "inconclusive"), (1.0, 1.0, ">1", "inconclusive"), (0.5, 1.0, "<1", "inconclusive"),
    (1e-12, 1e-12, ">0", "supported"), (-1e-12, -1e-12, ">0", "contradicted"),
    (0.5, 0.5, ">0", "supported"),  # zero-width away from 0: the seeds agreed
    (math.nan, 1.0, ">0", "inconclusive"), (0.5, math.nan, ">0", "inconclusive"),
])
def test_verdict_rule(low, high, expect, want):
    assert stats.verdict(low, high, expect=expect) == want


def test_verdict_rejects_unknown_expect_and_reversed_bounds():
    with pytest.raises(ValueError, match=r"'>=0'.*|.*<0, >0, <1, >1"):
        stats.verdict(0.1, 0.2, expect=">=0")
    with pytest.raises(ValueError, match="low=2.0 > high=1.0"):
        stats.verdict(2.0, 1.0, expect=">0")


def _run(cell, val_losses, seed=0):
    """epochs.csv rows of one run, train rows included (with losses that must be ignored)."""
    rows = []
    for epoch, loss in enumerate(val_losses, start=1):
        rows.append({"cell": cell, "arch": "a", "optimizer": "o", "seed": seed, "epoch": epoch,
                     "split": "train", "loss": 10.0 * epoch ** 2, "f1_macro": 0.5})
        rows.append({"cell": cell, "arch": "a", "optimizer": "o", "seed": seed, "epoch": epoch,
                     "split": "val", "loss": loss, "f1_macro": 0.5})
    return rows


def test_within_run_spread_by_hand():
    rows = (_run("four", [1.0, 0.6, 0.5, 0.2]) + _run("two", [1.0, 0.7], seed=1)
            + _run("one", [1.0], seed=2) + _run("five", [1.0, 0.5, 0.6, 0.3, 0.5], seed=3))
    epochs = pd.DataFrame(rows).sample(frac=1, random_state=1)  # row order must not matter
    got = stats.within_run_spread(epochs).set_index("cell")
    assert list(got.columns) == ["arch", "optimizer", "seed", "val_loss_change_sd", "n_changes"]
    # four epochs: changes -0.4, -0.1, -0.3; the last two (ending in epochs 3 and 4): sd 0.1
    assert got.loc["four", "val_loss_change_sd"] == pytest.approx(0.1)
    assert got.loc["four", "n_changes"] == 2
    # two epochs: the one change, population sd 0
    assert got.loc["two", "val_loss_change_sd"] == 0.0 and got.loc["two", "n_changes"] == 1
    assert math.isnan(got.loc["one", "val_loss_change_sd"]) and got.loc["one", "n_changes"] == 0
    # five epochs: changes ending in epochs 3, 4, 5 are +0.1, -0.3, +0.2: population sd sqrt(0.14 / 3)
    assert got.loc["five", "val_loss_change_sd"] == pytest.approx(math.sqrt(0.14 / 3))


def test_within_run_spread_names_missing_columns():
    with pytest.raises(KeyError, match="split"):
        stats.within_run_spread(pd.DataFrame({"cell": ["c"], "arch": ["a"], "optimizer": ["o"], "seed": [0],
                                              "epoch": [1], "loss": [1.0]}))


def test_mean_band():
    assert stats.mean_band([1, 2, 3]) == pytest.approx((2.0, 2.484138), abs=1e-6)
    mean, half = stats.mean_band([0.5, np.nan])
    assert mean == 0.5 and math.isnan(half)
    mean, half = stats.mean_band([0.2, 0.2, 0.2])
    assert mean == pytest.approx(0.2) and half == 0.0
    assert all(math.isnan(v) for v in stats.mean_band([]))


def test_t_quantile_and_variance_ratio_factor_match_the_intervals():
    assert stats.t_quantile(3) == pytest.approx(4.302653, abs=1e-6)
    assert math.isnan(stats.t_quantile(1))
    assert stats.variance_ratio_factor(3, 3) == pytest.approx(39.0, abs=1e-9)
    assert math.isnan(stats.variance_ratio_factor(1, 3))
    # the factors are the ones the intervals use
    d = stats.paired_difference([1.0, 2.5, 2.0], [0.0, 0.0, 0.0])
    sd = float(np.std([1.0, 2.5, 2.0], ddof=1))
    assert d["high"] - d["estimate"] == pytest.approx(stats.t_quantile(3) * sd / math.sqrt(3))
    r = stats.variance_ratio([1.0, 2.0, 4.0, 3.0], [1.0, 1.5, 3.0])
    assert r["high"] / r["estimate"] == pytest.approx(stats.variance_ratio_factor(4, 3))
    assert r["estimate"] / r["low"] == pytest.approx(stats.variance_ratio_factor(3, 4))
