"""Small-sample statistics behind the report's verdicts (pandas, numpy and scipy only).

Every comparison in this project is paired by seed: the same seed means the same data split, so
the run-to-run noise that both sides share cancels in the paired difference. The grids are small
(often 3 seeds), and the intervals here are honest about it: with 3 seeds the Student t factor
is t_{0.975,2} = 4.30, so a 95 % interval is about 2.5 times the spread of the differences on
each side of their mean, and only large, consistent differences are decided. With one seed there
is no interval at all and every verdict is inconclusive; that is the point, not a failure.

The rule of the report lives in `verdict`: supported when the whole interval lies on the claim's
side of 0 (or of ratio 1), contradicted when it lies on the other side, inconclusive otherwise.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sp

KEYS = ["cell", "arch", "optimizer", "seed"]
BOOTSTRAP_MIN_N = 20  # below this a bootstrap interval is too narrow (it cannot see the tails)
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_240_601  # fixed, so the same table always gives the same interval
EXPECTS = ("<0", ">0", "<1", ">1")
VERDICTS = ("supported", "contradicted", "inconclusive")


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95); got {confidence!r}")


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The two samples as float arrays, with every pair that has a NaN on either side dropped."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"paired samples must have equal lengths (one value per seed on each side); "
                         f"got {len(x)} and {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _all_equal(x: np.ndarray) -> bool:
    """True when the values are equal up to float rounding (0.3 - 0.2 != 0.4 - 0.3 in floats).

    The tolerance, 1e-12 of the largest magnitude (at least 1e-12), is far below any difference
    this project measures (scores in [0, 1], losses, seconds) and far above rounding noise.
    """
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())))


def _t_half_width(x: np.ndarray, confidence: float) -> float:
    """Half-width of the Student t interval of the mean; exactly 0 when all values are equal."""
    if _all_equal(x):  # else rounding noise would give a 1e-17-wide interval instead of none
        return 0.0
    return float(_sp.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def _bootstrap(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, with a fixed seed."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = x[rng.integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _mean_interval(x: np.ndarray, confidence: float, what: str) -> tuple[float, float, float, str]:
    """(estimate, low, high, method) for the mean of x: t below BOOTSTRAP_MIN_N values, else bootstrap."""
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, "no complete pairs: no estimate"
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, "one seed: no interval"
    if n >= BOOTSTRAP_MIN_N:
        low, high = _bootstrap(x, confidence)
        return mean, low, high, f"paired percentile bootstrap{what}, n={n}, {BOOTSTRAP_RESAMPLES} resamples"
    half = _t_half_width(x, confidence)
    return mean, mean - half, mean + half, f"paired t{what}, n={n}"


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict:
    """Mean of a - b over seeds, with a `confidence` interval suited to few seeds.

    a[i] and b[i] come from the same seed. Pairs with a NaN on either side are dropped and `n`
    counts the rest. Below 20 pairs the interval is Student t on the differences
    (mean ± t_{(1+c)/2, n-1} · sd/√n, sd with ddof=1); from 20 on a percentile bootstrap of the mean
    (10,000 resamples, fixed seed). All differences equal: a zero-width interval at the estimate,
    which says the seeds agreed, not that the difference is certain ("equal" allows float
    rounding, see `_all_equal`). One pair: the difference
    itself with NaN bounds, because one seed cannot show how much the difference varies.
    """
    _check_confidence(confidence)
    x, y = _paired(a, b)
    estimate, low, high, method = _mean_interval(x - y, confidence, "")
    return {"n": len(x), "mean_a": _mean(x), "mean_b": _mean(y), "estimate": estimate,
            "low": low, "high": high, "method": method}


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


def _check_positive(x: np.ndarray, side: str) -> None:
    bad = x[x <= 0]
    if len(bad):
        raise ValueError(f"ratio_interval needs positive values (times); side {side} has {float(bad[0])!r}. "
                         f"Check the timing columns of the summary table.")


def ratio_interval(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict:
    """Paired ratio a/b of positive quantities (times), as the geometric mean of a[i]/b[i].

    The interval is the t interval of log(a/b), exponentiated, so it is symmetric in the sense
    that swapping a and b inverts it; from 20 pairs on it is a bootstrap of the mean log ratio.
    `mean_a` and `mean_b` are plain arithmetic means, for the table. NaN pairs are dropped, n == 1
    gives NaN bounds, equal ratios give a zero-width interval. Times on a shared machine are noisy:
    a ratio decided from 3 seeds says the difference survived that noise in every run, no more.
    """
    _check_confidence(confidence)
    x, y = _paired(a, b)
    _check_positive(x, "a")
    _check_positive(y, "b")
    mean, low, high, method = _mean_interval(np.log(x / y), confidence, " on log ratios")
    return {"n": len(x), "mean_a": _mean(x), "mean_b": _mean(y), "estimate": math.exp(mean),
            "low": math.exp(low), "high": math.exp(high), "method": method}


def _variances(x: np.ndarray, y: np.ndarray) -> tuple[float, float, str | None]:
    """Both sample variances (ddof=1), or NaN with the reason when a side has fewer than 2 values."""
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan, f"fewer than 2 seeds (n_a={len(x)}, n_b={len(y)}): no variance"
    return tuple(0.0 if _all_equal(v) else float(v.var(ddof=1)) for v in (x, y)) + (None,)


def variance_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict:
    """Ratio of the spreads across seeds, var(a)/var(b) (ddof=1), for "more stable across runs".

    The interval is the F interval [ratio / F_hi, ratio / F_lo] with (n_a-1, n_b-1) degrees of
    freedom. It assumes normal, independent samples; paired seeds share a split, which makes it
    somewhat conservative. It is very wide with few seeds: with 3 seeds on each side
    F_{0.975}(2, 2) = 39, so only a variance ratio below 1/39 (or above 39) is decided. NaNs are
    dropped per side. Fewer than 2 values on a side: NaN estimate and interval. Both variances 0:
    NaN (0/0, inconclusive); one of them 0 gives a ratio of 0 or inf with a zero-width interval.
    """
    _check_confidence(confidence)
    x, y = (np.asarray(v, dtype=float).ravel() for v in (a, b))
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    var_a, var_b, why = _variances(x, y)
    out = {"n": min(len(x), len(y)), "n_a": len(x), "n_b": len(y), "mean_a": _mean(x), "mean_b": _mean(y),
           "var_a": var_a, "var_b": var_b, "estimate": math.nan, "low": math.nan, "high": math.nan}
    if why:
        return {**out, "method": f"F interval on variances: {why}"}
    method = f"F interval on variances, n_a={len(x)}, n_b={len(y)}"
    if var_a == 0 and var_b == 0:
        return {**out, "method": f"{method}: both variances are 0, inconclusive"}
    ratio = var_a / var_b if var_b else math.inf
    f_lo, f_hi = _sp.f.ppf([(1 - confidence) / 2, (1 + confidence) / 2], len(x) - 1, len(y) - 1)
    return {**out, "estimate": ratio, "low": ratio / f_hi, "high": ratio / f_lo, "method": method}


def verdict(low: float, high: float, *, expect: str) -> str:
    """The report's rule: "supported", "contradicted" or "inconclusive" for the interval [low, high].

    `expect` is the claim's side: "<0" or ">0" for a difference, "<1" or ">1" for a ratio.
    Supported when the whole interval is strictly on that side, contradicted when it is strictly
    on the other side, inconclusive otherwise: when it covers the threshold, touches it (a
    zero-width interval exactly at 0 is inconclusive) or has a NaN bound.
    """
    if expect not in EXPECTS:
        raise ValueError(f"expect must be one of {', '.join(EXPECTS)}; got {expect!r}")
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > high:
        raise ValueError(f"interval bounds out of order: low={low!r} > high={high!r}")
    threshold = float(expect[1:])
    below, above = high < threshold, low > threshold
    if not (below or above):
        return "inconclusive"
    return "supported" if below == (expect[0] == "<") else "contradicted"


def _change_sd(val: pd.DataFrame) -> tuple[float, int]:
    """Population sd of the val-loss changes ending in the second half of one run, and their count."""
    k = len(val)
    if k < 2:
        return math.nan, 0
    changes = np.diff(val.sort_values("epoch")["loss"].to_numpy(dtype=float))
    # change i (0-based) ends in val epoch position i + 2 (1-based); keep positions > k // 2
    late = changes[np.arange(2, k + 1) > k // 2]
    return float(late.std(ddof=0)), len(late)


def within_run_spread(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: how much the val loss jumps from epoch to epoch late in training.

    For each run (keys cell, arch, optimizer, seed) the val rows are sorted by epoch, and each
    epoch-to-epoch change of `loss` is counted in the epoch it ends in. Numbering the k val epochs
    1..k by position (so gaps or 0-based epochs do not matter), the changes ending in positions
    k // 2 + 1 .. k are kept: the second half of training, where early fast descent no longer
    dominates (k=2: the one change; k=4: changes 2->3 and 3->4; k=8: the last 4). Their population
    sd (ddof=0) is `val_loss_change_sd`, with their count in `n_changes`; a single change gives
    0.0, so 2-epoch runs all tie and cannot decide a stability claim. Fewer than 2 val epochs: NaN.
    """
    missing = [c for c in KEYS + ["epoch", "split", "loss"] if c not in epochs.columns]
    if missing:
        raise KeyError(f"epochs table lacks {', '.join(missing)}; expected the columns of epochs.csv")
    rows = []
    for keys, run in epochs.groupby(KEYS, sort=False):
        sd, n = _change_sd(run[run["split"] == "val"])
        rows.append({**dict(zip(KEYS, keys)), "val_loss_change_sd": sd, "n_changes": n})
    return pd.DataFrame(rows, columns=KEYS + ["val_loss_change_sd", "n_changes"])


def mean_band(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, t half-width) of the values, NaNs dropped, for error bars and ± in tables.

    One value: half-width NaN (no spread to show); none: both NaN. With 3 values the half-width
    is 2.48 sample sds, so overlapping bands of two unpaired groups say little: the paired
    comparisons decide, the bands only show.
    """
    _check_confidence(confidence)
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan
    return float(x.mean()), _t_half_width(x, confidence)


def t_quantile(n: int, confidence: float = 0.95) -> float:
    """The Student t factor of a paired interval over n seeds: t_{(1+c)/2, n-1} (4.30 for n=3).

    The report states it so a reader sees how wide a few seeds make every interval: a paired
    difference is decided only when its mean exceeds t/√n times the sd of the differences.
    NaN below 2 seeds, where there is no interval.
    """
    _check_confidence(confidence)
    return float(_sp.t.ppf((1 + confidence) / 2, n - 1)) if n >= 2 else math.nan


def variance_ratio_factor(n_a: int, n_b: int, confidence: float = 0.95) -> float:
    """How far the F interval of `variance_ratio` reaches above its estimate: F_{(1+c)/2}(n_b-1, n_a-1).

    With equal n it reaches the same factor below (39.0 each way for 3 seeds), so the report can
    say which variance ratios its seeds could ever decide. NaN when a side has fewer than 2 seeds.
    """
    _check_confidence(confidence)
    if n_a < 2 or n_b < 2:
        return math.nan
    return float(_sp.f.ppf((1 + confidence) / 2, n_b - 1, n_a - 1))


# --------------------------------------------------------------------------- two runs of one study
# Did a run reproduce another? Its seeds ran on another machine (or another day), so they are not
# paired with the reference's: the difference of two independent means, Welch's t, and an equivalence
# rule instead of a sign rule.

EQUIVALENCE_VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def _side(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def welch_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.90) -> dict:
    """Difference of the means of two independent samples, mean(a) - mean(b), with Welch's t interval.

    mean ± t_{(1+c)/2, df} · √(s_a²/n_a + s_b²/n_b), with the Welch-Satterthwaite df; it does not assume
    equal variances (another machine may scatter more). NaNs are dropped per side. Fewer than 2 values
    on a side: the difference with NaN bounds (one seed shows no spread). Both sides without spread
    (all values equal, up to rounding): a zero-width interval at the difference.
    """
    _check_confidence(confidence)
    x, y = _side(a), _side(b)
    out = {"n_a": len(x), "n_b": len(y), "mean_a": _mean(x), "mean_b": _mean(y)}
    estimate = out["mean_a"] - out["mean_b"]
    if len(x) < 2 or len(y) < 2:
        return {**out, "estimate": estimate, "low": math.nan, "high": math.nan, "df": math.nan,
                "method": f"Welch t: fewer than 2 seeds on a side (n={len(x)} and {len(y)}), no interval"}
    va, vb = (0.0 if _all_equal(v) else float(v.var(ddof=1)) / len(v) for v in (x, y))
    method = f"Welch t, n={len(x)} and {len(y)}"
    if va == 0 and vb == 0:
        return {**out, "estimate": estimate, "low": estimate, "high": estimate, "df": math.nan,
                "method": f"{method}: no spread on either side"}
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(_sp.t.ppf((1 + confidence) / 2, df)) * math.sqrt(va + vb)
    return {**out, "estimate": estimate, "low": estimate - half, "high": estimate + half, "df": df,
            "method": f"{method}, df={df:.1f}"}


def welch_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.90) -> dict:
    """Ratio of the geometric means of two independent samples of positive values (times), a / b.

    `welch_difference` of the logs, exponentiated: swapping a and b inverts the ratio and its interval.
    `mean_a` and `mean_b` stay arithmetic means, for the table.
    """
    x, y = _side(a), _side(b)
    _check_positive(x, "a")
    _check_positive(y, "b")
    logs = welch_difference(np.log(x), np.log(y), confidence=confidence)
    return {**logs, "mean_a": _mean(x), "mean_b": _mean(y), "estimate": math.exp(logs["estimate"]),
            "low": math.exp(logs["low"]), "high": math.exp(logs["high"]), "method": logs["method"] + " on logs"}


def equivalence(low: float, high: float, *, lower: float, upper: float) -> str:
    """The reproduction rule: "reproduced" when [low, high] lies inside [lower, upper] (the margins),
    "not reproduced" when it lies wholly outside them, "inconclusive" otherwise (it straddles a margin,
    or has a NaN bound).

    With a 90 % interval, "reproduced" is the two one-sided tests (TOST) at 5 % each: the difference
    is shown to be above `lower` and below `upper`.
    """
    if not lower < upper:
        raise ValueError(f"margins out of order: lower={lower!r} must be below upper={upper!r}")
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > high:
        raise ValueError(f"interval bounds out of order: low={low!r} > high={high!r}")
    if lower <= low and high <= upper:
        return "reproduced"
    if high < lower or low > upper:
        return "not reproduced"
    return "inconclusive"
