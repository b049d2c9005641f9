"""Pareto sets and hypervolume over plain (accuracy, FLOPs) points (comparisons: :mod:`sparsearch.study.noise`).

Objectives: accuracy up, target FLOPs down. Only feasible points (FLOPs within the budget) count.

Hypervolume is measured in the unit box of (accuracy, 1 - FLOPs / budget): the share of that box the
points dominate, from 0 (nothing) to 1 (100% accuracy at zero FLOPs). The reference point is accuracy
0 at the budget, so the figure reads the same for any budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Point", "hypervolume", "pareto_front"]


@dataclass(frozen=True)
class Point:
    number: int  # the trial number
    accuracy: float
    flops: int


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates (at least as accurate and as cheap, better in one), by FLOPs.
    Of equal points, the one with the lowest trial number stays."""
    ordered = sorted(points, key=lambda p: (p.flops, -p.accuracy, p.number))
    front: list[Point] = []
    for p in ordered:
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


def hypervolume(points: Sequence[Point], budget: int) -> float:
    """Dominated share of the (accuracy, 1 - FLOPs / budget) unit box; points over budget ignored."""
    area, best = 0.0, 0.0
    # Sweep from the cheapest point: each adds the strip of accuracy above the best so far.
    for p in sorted(pareto_front([p for p in points if p.flops <= budget]), key=lambda p: p.flops):
        saved = 1 - p.flops / budget
        area += (max(p.accuracy, 0.0) - best) * saved
        best = max(best, p.accuracy)
    return area
