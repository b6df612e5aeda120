"""The grid and its cells: a cell is (architecture, optimizer, seed), named `<arch>-<optimizer>-s<seed>`
by `cell_name` and nowhere else (the Snakefile's wildcard pattern is made by it too, carcolor.layout).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass


def cell_name(arch: str, optimizer: str, seed) -> str:
    return f"{arch}-{optimizer}-s{seed}"


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: (architecture, optimizer, seed)."""

    arch: str
    optimizer: str
    seed: int

    @property
    def name(self) -> str:
        return cell_name(self.arch, self.optimizer, self.seed)


def cells(grid: dict) -> list[Cell]:
    """The product of a grid section's archs x optimizers x seeds, in config order."""
    return [Cell(a, o, s) for a, o, s in itertools.product(grid["archs"], grid["optimizers"], grid["seeds"])]
