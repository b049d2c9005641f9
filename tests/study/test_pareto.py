from __future__ import annotations

import pytest

from sparsearch.study import Point, hypervolume, pareto_front
from sparsearch.study.early_stop import Peer, should_stop


def test_pareto_front_keeps_the_non_dominated_points_cheapest_first() -> None:
    points = [Point(0, 0.5, 10), Point(1, 0.6, 20), Point(2, 0.55, 25), Point(3, 0.7, 30), Point(4, 0.5, 10)]
    assert [p.number for p in pareto_front(points)] == [0, 1, 3]  # 2 is dominated by 1; 4 repeats 0


def test_hypervolume_is_the_dominated_share_of_the_unit_box() -> None:
    # One point at half the budget with accuracy 0.5: a 0.5 x 0.5 rectangle.
    assert hypervolume([Point(0, 0.5, 50)], budget=100) == pytest.approx(0.25)
    # A second, more accurate and dearer point adds the strip above: (0.8 - 0.5) x (1 - 0.8).
    assert hypervolume([Point(0, 0.5, 50), Point(1, 0.8, 80)], budget=100) == pytest.approx(0.25 + 0.3 * 0.2)
    # Points over budget and dominated points add nothing.
    assert hypervolume([Point(0, 0.5, 50), Point(1, 0.9, 120), Point(2, 0.4, 60)], budget=100) == pytest.approx(0.25)
    assert hypervolume([], budget=100) == 0.0


def test_early_stop_needs_enough_cheaper_peers_clearly_ahead() -> None:
    peers = [Peer(100, (0.6, 0.7)), Peer(90, (0.65, 0.72)), Peer(104, (0.7, 0.8)), Peer(500, (0.9, 0.95))]
    # Three peers of no more than 105 FLOPs lead by >= 0.02 at rung 0: stop.
    assert should_stop(0, 0.55, 100, peers, margin=0.02, min_peers=3)
    # Two are not enough; the expensive peer never counts.
    assert not should_stop(0, 0.55, 100, peers[:2] + peers[3:], margin=0.02, min_peers=3)
    # Within the margin of them: go on.
    assert not should_stop(0, 0.59, 100, peers, margin=0.02, min_peers=3)
    # A trial cheaper than all peers is never stopped.
    assert not should_stop(1, 0.1, 50, peers, margin=0.02, min_peers=1)
    # Peers without that rung (stopped earlier) do not count.
    assert not should_stop(1, 0.1, 100, [Peer(100, (0.9,))] * 3, margin=0.02, min_peers=3)
