"""Rank-correlation figures against hand-made tables, with the arithmetic shown."""

from __future__ import annotations

import math

import pytest

from sparsearch.study.fidelity import Measured, equal_cost_pairs, equal_cost_tau, fidelity, partial_tau
from sparsearch.study.validate import Candidate, choose


def _rows(scores, flops, accuracies) -> list[Measured]:
    return [
        Measured(str(i), s, f, a if isinstance(a, tuple) else (a,))
        for i, (s, f, a) in enumerate(zip(scores, flops, accuracies, strict=True))
    ]


def test_kendall_and_spearman_of_a_hand_made_table() -> None:
    # scores rank 1 2 3 4, stand-alone ranks 1 3 2 4: of the 6 pairs only (2, 3) is discordant.
    # τ = (5 - 1) / 6 = 2/3; ρ = 1 - 6·(0 + 1 + 1 + 0) / (4·(16 - 1)) = 1 - 12/60 = 0.8.
    rows = _rows([0.1, 0.2, 0.3, 0.4], [10, 20, 30, 40], [0.70, 0.80, 0.75, 0.90])
    result = fidelity(rows, resamples=50)
    assert result["kendall"]["value"] == pytest.approx(2 / 3)
    assert result["spearman"]["value"] == pytest.approx(0.8)
    # FLOPs rank like the scores here: the same τ.
    assert result["flops_kendall"]["value"] == pytest.approx(2 / 3)


def test_equal_cost_pairs_and_their_tau() -> None:
    # FLOPs 100, 105, 200, 215, 400: pairs within 10% of the larger: (0, 1) 5/105, (2, 3) 15/215.
    flops = [100, 105, 200, 215, 400]
    pairs = equal_cost_pairs(flops, 0.10)
    assert pairs == [(0, 1), (2, 3)]
    truth = [0.80, 0.70, 0.85, 0.90, 0.95]
    # score orders (0, 1) right (+1) and (2, 3) wrong (-1): (1 - 1) / 2 = 0.
    assert equal_cost_tau([0.5, 0.4, 0.6, 0.5, 0.9], truth, pairs) == 0.0
    # FLOPs order (0, 1) wrong (105 > 100 but 0.70 < 0.80) and (2, 3) right: (-1 + 1) / 2 = 0.
    assert equal_cost_tau(flops, truth, pairs) == 0.0
    # A perfect predictor on these pairs: 1.
    assert equal_cost_tau(truth, truth, pairs) == 1.0
    assert equal_cost_tau(truth, truth, []) is None


def test_partial_tau_is_kendalls_formula() -> None:
    # x = 1 2 3 4, y = 1 3 2 4 (τxy = 2/3), z = 1 2 4 3 (τxz = 2/3, τyz = 1/3):
    # (2/3 - 2/3 · 1/3) / √((1 - 4/9)(1 - 1/9)) = (4/9) / √(40/81) = 4 / √40 ≈ 0.6325.
    assert partial_tau([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 4, 3]) == pytest.approx(4 / math.sqrt(40))
    # z equal to x: nothing is left once z is known.
    assert partial_tau([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 3, 4]) == 0.0


def test_regret_intervals_and_the_verdict() -> None:
    # Two equal-cost pairs that the scores order right and FLOPs wrong, seeds that agree.
    rows = _rows(
        [0.9, 0.1, 0.8, 0.2, 0.5, 0.6],
        [100, 105, 200, 210, 300, 600],
        [(0.90, 0.91), (0.80, 0.81), (0.92, 0.93), (0.85, 0.86), (0.88, 0.89), (0.95, 0.96)],
    )
    result = fidelity(rows, picked="0", resamples=300, seed=1)
    # best stand-alone 0.955 (row 5) - recommended row 0's 0.905 = 0.05
    assert result["regret"]["value"] == pytest.approx(0.05)
    assert result["equal_cost_kendall"]["value"] == 1.0
    assert result["equal_cost_flops_kendall"]["value"] == -1.0
    assert result["equal_cost_advantage"]["value"] == 2.0
    for key in ("kendall", "spearman", "flops_kendall", "regret"):
        figure = result[key]
        assert figure["low"] <= figure["value"] + 1e-12 and figure["value"] <= figure["high"] + 1e-12
    assert result["equal_cost_pairs"] == 2
    assert result["resolution"]["median_standard_error"] == pytest.approx(0.005)
    assert "the search adds information" in result["verdict"]
    assert fidelity(rows, picked="0", resamples=300, seed=1) == result  # the same draw, the same intervals


def test_a_difference_inside_the_noise_is_a_tie() -> None:
    # Stand-alone seeds disagree as much as the configurations differ: no conclusion at equal cost.
    rows = _rows(
        [0.9, 0.1, 0.8, 0.2, 0.5],
        [100, 105, 200, 210, 300],
        [(0.80, 0.90), (0.90, 0.80), (0.84, 0.86), (0.86, 0.84), (0.85, 0.85)],
    )
    assert "a tie" in fidelity(rows, resamples=300)["verdict"]


def test_fewer_than_three_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        fidelity(_rows([0.1, 0.2], [1, 2], [0.5, 0.6]))


def test_choose_takes_the_recommended_the_front_a_spread_and_equal_cost_partners() -> None:
    pool = [
        Candidate(i, {"k": i}, score, flops, pareto=pareto)
        for i, (score, flops, pareto) in enumerate(
            [
                (0.70, 100, True),
                (0.60, 104, False),  # equal cost with trial 0
                (0.75, 300, True),
                (0.65, 310, False),  # equal cost with trial 2
                (0.72, 500, False),
                (0.80, 900, True),  # the recommended one
                (0.50, 905, False),
                (0.71, 700, False),
            ]
        )
    ]
    chosen = choose(pool, 6, 0.10)
    numbers = [c.number for c, _ in chosen]
    assert len(numbers) == 6 and numbers == sorted(numbers, key=lambda n: pool[n].flops)
    why = {c.number: reason for c, reason in chosen}
    assert why[5] == "recommended"
    assert {0, 2} <= set(why)  # the Pareto set
    assert any(reason.startswith("equal cost") for reason in why.values())
    assert choose(pool, 6, 0.10) == chosen  # deterministic


def test_the_minimum_detectable_difference_of_a_hand_made_table() -> None:
    from sparsearch.study.fidelity import minimum_detectable_difference, resolution

    # Three configurations, three seeds each: seed standard deviations 0.01, 0.02 and 0.03 (median 0.02).
    rows = [
        Measured("a", 0.5, 10, (0.79, 0.80, 0.81)),
        Measured("b", 0.6, 20, (0.80, 0.82, 0.84)),
        Measured("c", 0.7, 30, (0.82, 0.85, 0.88)),
    ]
    # (z_0.975 + z_0.80) · σ · √(2/n) = (1.959964 + 0.841621) · 0.02 · √(2/3)
    expected = (1.959964 + 0.841621) * 0.02 * (2 / 3) ** 0.5
    assert abs(resolution(rows)["minimum_detectable_difference"] - expected) < 1e-6
    assert abs(minimum_detectable_difference(0.02, 3) - expected) < 1e-6
    assert minimum_detectable_difference(0.02, 12) == pytest.approx(expected / 2)  # 4× the seeds, half the MDD
    text = fidelity(rows, resamples=50)["verdict"]
    assert f"resolves differences of {100 * expected:.1f} points or more" in text
    one_seed = [Measured(r.key, r.score, r.flops, r.accuracies[:1]) for r in rows]
    assert "no difference is resolvable" in fidelity(one_seed, resamples=50)["verdict"]
