"""Which images a preparation uses: the colour classes, and per colour and split the candidates in the
order they are to be used, split by advert (no car in two splits)."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from .cache import SPLITS
from .colours import NON_COLOURS
from .dvm import name_key

PRECEDENCE = ("val", "test", "train")  # which split keeps an advert listed under two colours


class DataError(ValueError):
    """The data cannot give what the config asks for; the message says what to change."""


def colour_counts(images: pd.DataFrame) -> pd.Series:
    """Images per real colour (Unlisted and Multicolour left out), most frequent first, ties by name."""
    counts = images.loc[~images["color"].isin(NON_COLOURS), "color"].astype(object).value_counts()
    counts = counts[counts > 0]
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return pd.Series({c: int(n) for c, n in order}, dtype=np.int64)


def choose_colours(images: pd.DataFrame, colours: list[str] | None, top_n: int | None) -> list[str]:
    """The class list: `colours` as given (each must occur), or the `top_n` most frequent real colours."""
    counts = colour_counts(images)
    have = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
    if colours:
        for c in colours:
            if c in NON_COLOURS:
                raise DataError(f"colour {c!r} is not a colour class (never use {' or '.join(NON_COLOURS)}).")
        missing = [c for c in colours if c not in counts.index]
        if missing:
            raise DataError(f"colour {missing[0]!r} does not occur in the data; colours found: {have}.")
        return list(colours)
    if not top_n:
        raise DataError("give 'colours' or 'top_n_colours'.")
    if top_n > len(counts):
        raise DataError(f"top_n_colours is {top_n} but the data has only {len(counts)} colours: {have}.")
    return list(counts.index[:top_n])


def _rng(seed: int, colour: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(colour.encode())])


def _fewest(cumulative: np.ndarray, n: int) -> int:
    """The fewest leading adverts whose images add up to n or more (0 for n == 0)."""
    return int(np.searchsorted(cumulative, n) + 1) if n else 0


def _held_out(sizes: np.ndarray, n_train: int, n_val: int, n_test: int, colour: str) -> tuple[int, int]:
    """How many adverts go to val (taken from the front of the shuffled list) and to test (from its back).

    Each takes the fewest whole adverts that give its count, then a few more as a reserve for
    unreadable files (val first, then test) while the adverts in between keep n_train images.
    Test comes from the back so that val, and hence train, stay exactly as without a test split.
    """
    head, tail, total = np.cumsum(sizes), np.cumsum(sizes[::-1]), int(sizes.sum())
    k, j = _fewest(head, n_val), _fewest(tail, n_test)

    def left(k, j):  # train images once k val and j test adverts are taken
        return total - int(head[k - 1]) - (int(tail[j - 1]) if j else 0)

    if left(k, j) < n_train:
        test = f"{n_test} test, " if n_test else ""
        raise DataError(f"colour {colour!r}: {total} images in {len(sizes)} adverts cannot be split by advert "
                        f"into {n_val} val, {test}{n_train} train images; lower the counts.")
    reserve = n_val // 20 + 2
    while k + j < len(sizes) and head[k - 1] < n_val + reserve and left(k + 1, j) >= n_train:
        k += 1
    reserve = n_test // 20 + 2
    while n_test and k + j < len(sizes) and tail[j - 1] < n_test + reserve and left(k, j + 1) >= n_train:
        j += 1
    return k, j


def check_sizes(sizes: np.ndarray, counts: dict[str, int], colour: str) -> tuple[int, int]:
    """Whether adverts of these sizes (images each, in the order they are taken) give the counts of each
    split by whole adverts; raises DataError saying what to lower. Returns the val and test adverts."""
    if int(sizes.sum()) < sum(counts.values()):
        raise DataError(f"colour {colour!r} has only {int(sizes.sum())} images but {asked(counts)} are requested; "
                        f"lower {_keys(counts)} or drop the colour.")
    return _held_out(sizes, counts["train"], counts["val"], counts["test"], colour)


def split_by_advert(images: pd.DataFrame, colours: list[str], n_train: int, n_val: int,
                    seed: int, n_test: int = 0) -> pd.DataFrame:
    """Candidates per colour and split, in the order they are to be used.

    Adverts (all photos of one car) are shuffled per colour; whole adverts from the front of that
    list go to the val pool until it holds n_val images plus a small reserve (for unreadable files),
    whole adverts from its back go to the test pool likewise (none when n_test is 0), the rest form
    the train pool. Each pool's images are then shuffled; the first n are used, the rest replace
    unreadable ones. Returns images with the extra columns label, split and rank (0, 1, ... per
    colour and split). No advert is in two splits. With n_test == 0 the train and val pools are
    exactly those of a split without a test split. The result depends only on the names
    (apostrophes ignored, so the Kaggle copy gives the same sample), never on the order or layout
    the files were listed in.
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    pools = []
    for label, colour in enumerate(colours):
        rng = _rng(seed, colour)
        own = images[(images["color"] == colour).to_numpy()]
        own = own.iloc[np.argsort(own["name"].astype(object).map(name_key).to_numpy(dtype=object),
                                  kind="stable")].reset_index(drop=True)
        adv = own["adv_id"].astype(object).to_numpy()
        sizes = pd.Series(adv).value_counts().sort_index()  # adverts in name order, not listing order
        adverts = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        k, j = check_sizes(sizes.loc[adverts].to_numpy(), counts, colour)
        held_out = {a: "val" for a in adverts[:k]} | {a: "test" for a in adverts[len(adverts) - j:]}
        side = pd.Series(adv).map(held_out).fillna("train").to_numpy(dtype=object)
        # The test pool is shuffled last: the generator then draws val and train as it always did.
        for split in ("val", "train", "test"):
            pool = own[side == split]
            pool = pool.iloc[rng.permutation(len(pool))].copy()
            pool["label"], pool["split"] = label, split
            pools.append(pool)
    out = pd.concat(pools, ignore_index=True)
    out["split"] = out["split"].astype(pd.CategoricalDtype(list(SPLITS)))
    out = _one_split_per_advert(out)
    out["rank"] = out.groupby(["label", "split"], sort=False, observed=True).cumcount()
    _check_pools(out, colours, counts)
    return out


def asked(counts: dict[str, int]) -> str:
    """'20 train + 6 val = 26' (test named only when asked for)."""
    parts = [f"{n} {s}" for s, n in counts.items() if n or s != "test"]
    return f"{' + '.join(parts)} = {sum(counts.values())}"


def _keys(counts: dict[str, int]) -> str:
    return " / ".join(f"n_{s}_per_colour" for s, n in counts.items() if n or s != "test")


def _one_split_per_advert(out: pd.DataFrame) -> pd.DataFrame:
    """Drop the rows of an advert listed under two colours from every split but its first in PRECEDENCE."""
    adv = out["adv_id"].astype(object)
    split = out["split"].astype(object)
    keep = np.ones(len(out), dtype=bool)
    for i, first in enumerate(PRECEDENCE):
        taken = set(adv[(split == first).to_numpy()])
        for later in PRECEDENCE[i + 1:]:
            keep &= ~((split == later) & adv.isin(taken)).to_numpy()
    return out[keep].reset_index(drop=True)


def _check_pools(out: pd.DataFrame, colours: list[str], counts: dict[str, int]) -> None:
    """Each colour's pool of each split still holds its count once shared adverts were removed."""
    sizes = out.groupby(["label", "split"], observed=True).size()
    for label, colour in enumerate(colours):
        for split, n in counts.items():
            have = int(sizes.get((label, split), 0))
            if have < n:
                raise DataError(f"colour {colour!r}: only {have} {split} images are left once adverts shared "
                                f"with another colour's {' or '.join(PRECEDENCE[:PRECEDENCE.index(split)])} "
                                f"split are removed; lower n_{split}_per_colour.")
