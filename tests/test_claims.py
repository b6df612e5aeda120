"""The lab's claims evaluated on synthetic grids whose verdicts are known by construction."""
import math

import numpy as np
import pandas as pd
import pytest

from carcolor.analysis import claims
V2, V1 = "mobilenet_v2", "mobilenet_v1"
T_975_2 = 4.302653
# adam's per-seed numbers on MobileNetV2; everything else is derived from them below
ADAM_F1 = np.array([0.70, 0.74, 0.72])
ADAMAX_GAIN = {"better": np.array([0.05, 0.06, 0.055]), "worse": -np.array([0.05, 0.06, 0.055]),
               "noisy": np.array([0.05, -0.04, 0.01])}
FINAL_F1 = {"adam": np.array([0.60, 0.70, 0.80]), "adamax": np.array([0.700, 0.701, 0.702])}
EPOCH_S = np.array([10.0, 11.0, 10.5])
STEP_MS = np.array([2.0, 2.1, 2.05])
JUMP = {"adam": np.array([0.20, 0.22, 0.21]), "adamax": np.array([0.020, 0.021, 0.019])}


def _run(arch, opt, i, seed, scenario):
    v1, adamax = arch == V1, opt == "adamax"
    f1 = ADAM_F1[i] + adamax * ADAMAX_GAIN[scenario][i] - v1 * (0.10 + 0.01 * i)
    epoch_s = EPOCH_S[i] * (1.2 + 0.01 * i if adamax else 1.0) * (0.6 + 0.01 * i if v1 else 1.0)
    return {"cell": f"{arch}-{opt}-s{seed}", "arch": arch, "optimizer": opt, "seed": seed,
            "score_f1_macro": f1, "score_split": "test", "final_val_f1_macro": FINAL_F1[opt][i] - 0.1 * v1,
            "train_epoch_seconds": epoch_s, "optimizer_step_ms": STEP_MS[i] * (1.3 if adamax else 1.0)}


def _epochs(row, jump):
    """Four val epochs whose late changes are +jump and -2 jump: population sd 1.5 jump."""
    keys = {k: row[k] for k in ("cell", "arch", "optimizer", "seed")}
    losses = [1.0, 0.8, 0.8 + jump, 0.8 - jump]
    return [{**keys, "epoch": e, "split": split, "loss": loss, "f1_macro": 0.5}
            for e, loss in enumerate(losses, start=1) for split in ("train", "val")]


def grid(scenario="better", archs=(V2, V1), opts=("adam", "adamax"), seeds=(0, 1, 2), cells=None):
    """(summary, epochs) of a synthetic grid; `cells` limits it to some (arch, optimizer) pairs."""
    summary, epochs = [], []
    for arch in archs:
        for opt in opts:
            if cells is not None and (arch, opt) not in cells:
                continue
            for i, seed in enumerate(seeds):
                summary.append(_run(arch, opt, i, seed, scenario))
                epochs += _epochs(summary[-1], JUMP[opt][i])
    return pd.DataFrame(summary), pd.DataFrame(epochs)


def _row(table, claim_id, held_fixed, metric=None):
    rows = table[(table["claim_id"] == claim_id) & (table["held_fixed"] == held_fixed)]
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_clearly_better_grid_supports_every_claim():
    table = claims.comparisons(*grid("better"))
    assert list(table.columns) == claims.COLUMNS == [
        "claim_id", "claim", "metric", "held_fixed", "side_a", "side_b", "kind", "n_seeds", "mean_a", "mean_b",
        "estimate", "low", "high", "expect", "method", "verdict"]
    assert len(table) == 14  # 5 optimizer comparisons x 2 archs + 2 arch comparisons x 2 optimizers
    assert set(table["verdict"]) == {"supported"}
    assert set(table["n_seeds"]) == {3}
    assert claims.verdict_counts(table) == {"supported": 14, "contradicted": 0, "inconclusive": 0}


def test_adamax_better_row_by_hand():
    row = _row(claims.comparisons(*grid("better")), "adamax-better", "arch=mobilenet_v2")
    half = T_975_2 * 0.005 / math.sqrt(3)  # gains 0.05, 0.06, 0.055: sd 0.005
    assert (row["side_a"], row["side_b"], row["kind"], row["expect"]) == ("adamax", "adam", "difference", ">0")
    assert row["metric"] == "score_f1_macro" and row["method"] == "paired t, n=3"
    assert row["estimate"] == pytest.approx(0.055)
    assert (row["low"], row["high"]) == pytest.approx((0.055 - half, 0.055 + half), abs=1e-6)
    assert row["mean_b"] == pytest.approx(ADAM_F1.mean()) and row["mean_a"] == pytest.approx(ADAM_F1.mean() + 0.055)


def test_other_rows_by_hand():
    table = claims.comparisons(*grid("better"))
    within = _row(table, "adamax-stable-within", "arch=mobilenet_v1")
    assert within["estimate"] == pytest.approx(1.5 * (JUMP["adamax"] - JUMP["adam"]).mean())
    seeds = _row(table, "adamax-stable-seeds", "arch=mobilenet_v2")
    assert seeds["kind"] == "ratio" and seeds["expect"] == "<1"
    assert seeds["estimate"] == pytest.approx(1e-6 / 1e-2)  # variances of the final val macro-F1
    assert seeds["high"] == pytest.approx(1e-4 * 39)  # F(2, 2) 2.5 % quantile is 1/39
    step = _row(table, "adamax-slower", "arch=mobilenet_v2", "optimizer_step_ms")
    assert (step["estimate"], step["low"], step["high"]) == pytest.approx((1.3, 1.3, 1.3))
    faster = _row(table, "v1-faster", "optimizer=adam")
    assert (faster["side_a"], faster["side_b"], faster["expect"]) == (V1, V2, "<1")
    assert faster["estimate"] == pytest.approx((0.60 * 0.61 * 0.62) ** (1 / 3))  # geometric mean
    assert faster["method"] == "paired t on log ratios, n=3"


def test_clearly_worse_contradicts_and_noise_is_inconclusive():
    worse = claims.comparisons(*grid("worse"))
    assert set(worse.loc[worse["claim_id"] == "adamax-better", "verdict"]) == {"contradicted"}
    noisy = claims.comparisons(*grid("noisy"))
    better = noisy[noisy["claim_id"] == "adamax-better"]
    assert set(better["verdict"]) == {"inconclusive"}
    assert (better["low"] < 0).all() and (better["high"] > 0).all()
    assert claims.verdict_counts(noisy) == {"supported": 12, "contradicted": 0, "inconclusive": 2}


def test_one_seed_makes_every_verdict_inconclusive():
    table = claims.comparisons(*grid("better", seeds=(7,)))
    assert len(table) == 14 and set(table["n_seeds"]) == {1}
    assert set(table["verdict"]) == {"inconclusive"}
    assert table["low"].isna().all() and table["high"].isna().all()
    assert _row(table, "adamax-better", "arch=mobilenet_v2")["estimate"] == pytest.approx(0.05)
    assert "fewer than 2 seeds" in _row(table, "adamax-stable-seeds", "arch=mobilenet_v2")["method"]


def test_one_architecture_has_no_architecture_claims():
    table = claims.comparisons(*grid("better", archs=(V2,)))
    assert list(table["claim_id"]) == ["adamax-stable-within", "adamax-stable-seeds", "adamax-better",
                                       "adamax-slower", "adamax-slower"]
    assert set(table["held_fixed"]) == {"arch=mobilenet_v2"}


def test_the_labs_grid_compares_architectures_under_adam_only():
    summary, epochs = grid("better", cells={(V2, "adam"), (V2, "adamax"), (V1, "adam")})
    table = claims.comparisons(summary, epochs)
    arch_rows = table[table["claim_id"].str.startswith("v1-")]
    assert list(arch_rows["held_fixed"]) == ["optimizer=adam", "optimizer=adam"]
    assert set(table.loc[table["claim_id"].str.startswith("adamax-"), "held_fixed"]) == {"arch=mobilenet_v2"}


def test_runs_are_paired_by_seed_not_by_row_order():
    summary, epochs = grid("better", archs=(V2,), seeds=(3, 5, 9))
    shuffled = summary.sample(frac=1, random_state=0).reset_index(drop=True)
    row = _row(claims.comparisons(shuffled, epochs), "adamax-better", "arch=mobilenet_v2")
    assert row["estimate"] == pytest.approx(0.055) and row["verdict"] == "supported"
    # a seed only one side ran is left out of the pairs
    partial = summary[summary["cell"] != f"{V2}-adam-s9"]
    row = _row(claims.comparisons(partial, epochs), "adamax-better", "arch=mobilenet_v2")
    assert row["n_seeds"] == 2 and row["estimate"] == pytest.approx(0.055)


def test_duplicate_seeds_and_missing_columns_are_errors():
    summary, epochs = grid("better", archs=(V2,))
    dup = pd.concat([summary, summary.iloc[[0]].assign(cell="again")], ignore_index=True)
    with pytest.raises(ValueError, match=r"seed 0 \(cells mobilenet_v2-adam-s0, again\)"):
        claims.comparisons(dup, epochs)
    with pytest.raises(KeyError, match="optimizer_step_ms"):
        claims.comparisons(summary.drop(columns="optimizer_step_ms"), epochs)


def test_verdict_counts_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="maybe"):
        claims.verdict_counts(pd.DataFrame({"verdict": ["supported", "maybe"]}))
    assert claims.verdict_counts(pd.DataFrame({"verdict": []})) == {
        "supported": 0, "contradicted": 0, "inconclusive": 0}
