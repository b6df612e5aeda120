"""The report's words on grids of every shape: report/index.qmd's chunks and inline code run on the fixture
grid and on its cuts (tests/report_text.py, no render), and the text checked for the facts each case must
state and the sentences it must not (a best pair among tied ones, a test split that is not there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carcolor.reporting import fmt, verdicts
from tests.fixtures import make_tables as fx
from tests.report_text import report_markdown

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _two_tied(tables: dict) -> dict:
    """MobileNetV2 + Adam scoring what MobileNetV2 + Adamax scores, seed by seed."""
    summary = tables["summary"].copy()
    adam, adamax = (summary["cell"].str.startswith(f"mobilenet_v2-{o}-") for o in ("adam", "adamax"))
    summary.loc[adam, "score_f1_macro"] = summary.loc[adamax, "score_f1_macro"].to_numpy()
    return fx.with_comparisons({**tables, "summary": summary})


def _real_one_seed(tables: dict) -> dict:
    """Seed 0 of real DVM-Car data: ImageNet weights, no augmentation, some images skipped."""
    cut = fx.only_seeds(tables, [0])
    cut["dataset.json"] = {**cut["dataset.json"], "source": "dvm", "synthetic": False,
                           "skipped": {"unreadable": 3, "missing_colour": 12},
                           "archives": ["/data/dvm/Confirmed_fronts.zip"]}
    cut["summary"] = cut["summary"].assign(pretrained=True, hflip=False, crop_padding=0)
    return cut


CASES = {
    "one seed, real data": _real_one_seed,
    "all tied": fx.tied,
    "two tied": _two_tied,
    "one pair": lambda t: fx.only_pairs(t, [("mobilenet_v2", "adam")]),
    "no test split": fx.without_test_split,
}


def _read(markdown: str) -> str:
    """The Markdown with Quarto's escapes of inline values taken out, as a reader reads it."""
    return re.sub(r"\\([\\`*_{}\[\]()>#+\-.!])", r"\1", markdown)


def _flat(text: str) -> str:
    """The text on one line, so a phrase is found wherever the source broke its lines."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """{case: (the report's Markdown, its tables)}: the fixture grid as it is, and each case of CASES."""
    tables = fx.read_tables(FIXTURES / "tables")
    out = {"fixture": (_read(report_markdown(FIXTURES)), tables)}
    for case, make in CASES.items():
        cut = make(tables)
        folder = tmp_path_factory.mktemp("results")
        fx.write_tables(cut, folder / "tables")
        out[case] = (_read(report_markdown(folder)), cut)
    return out


def _line_of(text: str, *facts: str) -> str:
    """The one line of the text that holds every fact."""
    lines = [line for line in text.splitlines() if all(f in line for f in facts)]
    assert len(lines) == 1, (facts, lines)
    return lines[0]


@pytest.mark.parametrize("case", ["fixture", *CASES])
def test_every_comparison_is_stated_with_its_verdict_and_numbers(texts, case):
    text, tables = texts[case]
    split = tables["summary"]["score_split"].iloc[0]
    for _, row in tables["comparisons"].iterrows():
        v = verdicts.verdict(row, split)
        line = _line_of(text, f"{v.held}, {v.metric}, {v.contrast}*:")
        assert f"**{v.label}**" in line, line
        if v.case != "one seed, spread":  # a spread needs two seeds: there is no estimate to state
            assert v.estimate in line, line
        if v.case == "decided":
            assert all(x in line for x in (v.low, v.high, f"{v.n} seeds", v.method, v.threshold)), line


@pytest.mark.parametrize("case", ["fixture", *CASES])
def test_nothing_is_left_unfilled_or_ungrammatical(texts, case):
    text, tables = texts[case]
    assert "{python}" not in text and not re.search(r"\b(nan|None)\b", text)
    assert not re.search(r"\b1 (pairs|seeds|runs|comparisons)\b", text)
    n_runs = len(tables["summary"])
    assert f"has {n_runs} runs" in text and f"one of the {n_runs} runs below" in text
    for cell in tables["summary"]["cell"]:
        assert fmt.cell_link(cell) in text and f"make cell CELL={cell}" in text


def test_the_fixture_grid(texts):
    text = _flat(texts["fixture"][0])
    assert '::: {.callout-warning title="Synthetic data"}' in text and "Protocol: an untouched test split" in text
    assert "12 runs: 4 pairs of network and optimizer" in text and "with 3 seeds for 6 epochs" in text
    assert "The best pair was MobileNetV2 + Adamax, with a mean test macro-F1 of 0.770 ± 0.065" in text
    assert "All runs together took 0:26:09" in text and "(40 images per colour)" in text
    assert text.count("Of the 14 comparisons, 9 are supported, 1 contradicted and 4 inconclusive.") == 2
    assert "**3 seeds** per pair" in text and "= 4.30" in text and "2.48 standard deviations" in text
    assert "From 20 seeds on a bootstrap" in text
    assert "a factor of 39 each way" in text and "would still be 4.0" in text
    assert "120 for training, 40 for validation (*val*) and 40 for the test split" in text
    assert "Every run trains one network from scratch" in text and "at 96 × 96 pixels, batch size 32" in text
    assert "random crop after padding by 4 px and a random horizontal flip" in text
    assert "for example `mobilenet_v2-adam-s0`" in text and "**Read from:** `resized_DVM`." in text
    assert "Lab, total training time: 1:54:34 / 1:38:34 = 1.16×" in text
    assert "the lab did not run MobileNetV1 + Adamax" in text and "(not MobileNetV1 + Adamax)" in text
    assert "ran on `lab-node-1`, from commit `3f1c2a9d0b`; no tracked file differed" in text
    assert "every run used the packages of `requirements.lock`" in text
    assert "Rendered with **report_text**" in text and "ran on *cpu (2 threads)*" in text
    assert "Not answered" not in text and "tied" not in text


def test_one_supported_comparison_is_singular(tmp_path):
    tables = fx.read_tables(FIXTURES / "tables")
    comparisons = tables["comparisons"]
    tables["comparisons"] = comparisons.assign(verdict=["supported"] + ["inconclusive"] * (len(comparisons) - 1))
    fx.write_tables(tables, tmp_path / "tables")
    assert "Of the 14 comparisons, 1 is supported, 0 contradicted and 13 inconclusive." in _flat(
        _read(report_markdown(tmp_path)))


def test_one_seed_of_real_data(texts):
    text = _flat(texts["one seed, real data"][0])
    assert "synthetic" not in text and "**Source:** DVM-Car (dvm)." in text
    assert "**Images skipped:** 15 (3 unreadable and 12 missing colour)." in text
    assert "**Read from:** `Confirmed_fronts.zip`." in text
    assert "**one seed** per pair" in text and "With one seed neither can be decided" in text
    assert text.count(verdicts.ONE_SEED) >= 2 * 14 + 1  # the table, the sentences, the rule
    assert "All 14 comparisons are inconclusive" in text and "(one seed, no interval)" in text
    assert text.count("One seed per pair: single values, no interval.") == 2  # the quality and time captions
    assert "each trained with one seed for 6 epochs" in text and "seed(s) 0;" in text
    assert "fine-tunes one network, starting from its ImageNet weights" in text
    assert "Training images are not augmented." in text and " ± " not in text.split("# Data")[1]
    assert f"(one seed: no interval, so {verdicts.ONE_SEED})" in text


def test_tied_pairs_are_not_a_best_pair(texts):
    text = _flat(texts["all tied"][0])
    assert "best pair" not in text
    assert "All 4 pairs tied for the best mean test macro-F1, 0.100 (mean over 3 seeds)." in text
    assert "where MobileNetV1 + Adam, the fastest of the pairs tied for the best mean test macro-F1, puts" in text
    two = _flat(texts["two tied"][0])
    assert "MobileNetV2 + Adam and MobileNetV2 + Adamax tied for the best mean test macro-F1, 0.770" in two
    assert "where MobileNetV2 + Adam, the fastest of the pairs tied" in two  # 23.2 s per epoch against 24.3 s


def test_one_pair(texts):
    text = _flat(texts["one pair"][0])
    assert "3 runs: one pair of network and optimizer (MobileNetV2 + Adam)" in text
    assert "Its mean test macro-F1 was" in text and "best" not in text.split("# Method")[0]
    assert "and @fig-confusion where the pair puts" in text
    assert "This grid has no two pairs of runs that a lab claim compares, so no claim is decided." in text
    assert "Not answered by this grid, which lacks one side of each: Adamax trains" in text
    assert "This grid has no pair of runs whose times a lab claim compares." in text


def test_no_test_split(texts):
    text = _flat(texts["no test split"][0])
    assert "**Protocol: the lab's.** The held-out images (40 images per colour)" in text
    assert "untouched" not in text and "Every score is read on the val split" in text
    assert "its epoch is chosen and scored on the val split (the lab's protocol)" in text
    assert "**Images per colour:** 120 for training and 40 for validation (*val*)." in text
    assert "| Val macro-F1" in text and "With MobileNetV2, val macro-F1, Adamax − Adam*" in text
    assert "Test" not in text.split("# Data")[1].split("# References")[0]
