"""Early stopping of clearly losing trials in ``--eval train``, for two objectives.

Optuna's pruners compare one objective; here a trial is judged against trials that cost no more.
During training a trial is evaluated at fixed points (rungs: a third and two thirds of its steps) on the
scoring part of the validation split, and its accuracies there are kept with the trial (``curve``).

**The rule.** At rung r, a trial of target FLOPs f with accuracy a stops when at least ``peers``
completed feasible trials with FLOPs ≤ f × (1 + ``tolerance``) had accuracy ≥ a + ``margin`` at the
same rung. Such a trial is behind, at the same point of training, several configurations that are no
more expensive: it is unlikely to reach the Pareto set. A trial with fewer such peers always goes on,
so the first trials and the cheapest configurations are never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RUNGS", "Peer", "should_stop"]

RUNGS = (1 / 3, 2 / 3)  # fractions of a trial's steps where it is evaluated
TOLERANCE = 0.05


@dataclass(frozen=True)
class Peer:
    flops: int
    curve: tuple[float, ...]  # accuracy at each rung


def should_stop(
    rung: int, accuracy: float, flops: int, peers: Sequence[Peer], *, margin: float, min_peers: int
) -> bool:
    """Whether a trial at ``rung`` (index into :data:`RUNGS`) is clearly losing; see the module text."""
    ahead = [
        p
        for p in peers
        if p.flops <= flops * (1 + TOLERANCE) and len(p.curve) > rung and p.curve[rung] >= accuracy + margin
    ]
    return len(ahead) >= min_peers
