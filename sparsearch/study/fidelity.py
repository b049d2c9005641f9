"""How well a study's scores rank configurations: rank correlation with stand-alone training.

The weight-sharing test of Yu et al. ("How to Train Your Super-Net", 2020): train a sample of the
study's configurations stand-alone and compare the two rankings. Figures, for N configurations with a
supernet score, target FLOPs and one or more stand-alone accuracies (one per seed):

- ``kendall`` and ``spearman``: τ-b and ρ between supernet score and mean stand-alone accuracy;
- ``flops_kendall``: τ-b between FLOPs and stand-alone accuracy, the trivial predictor "more compute,
  more accuracy" that a search must beat to add anything;
- ``equal_cost``: the same two predictors judged only on pairs of near-equal cost (FLOPs within
  ``tolerance`` of the larger): (concordant - discordant) / pairs, a τ on those pairs. A supernet that
  ranks equal-cost pairs no better than their FLOPs do adds nothing over picking a uniform setting;
- ``partial_kendall``: τ between score and accuracy given FLOPs, (τxy - τxz·τyz) / √((1 - τxz²)(1 - τyz²));
- ``regret``: stand-alone accuracy of the best of the N minus that of the configuration the study picked.

Every figure carries a 95% percentile bootstrap interval: configurations are resampled with
replacement, and within each, its seeds (so the ground truth's own noise widens the interval). The
difference between the supernet's and FLOPs' equal-cost τ is bootstrapped paired, and a difference
whose interval holds 0 is a tie.

The ground truth's power: :func:`minimum_detectable_difference` is the smallest difference between two
configurations' mean accuracies that the validation's seeds resolve (two-sided 5% test, 80% power,
the median seed standard deviation); every verdict states it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["Measured", "equal_cost_tau", "fidelity", "minimum_detectable_difference", "partial_tau", "resolution"]

BOOTSTRAP = 2000  # resamples; the intervals' last digit moves by about 0.01 between seeds of the draw
ALPHA, POWER = 0.05, 0.80  # of the minimum detectable difference


@dataclass(frozen=True)
class Measured:
    """One validated configuration."""

    key: str  # the trial it came from, e.g. "17"
    score: float  # the study's score (supernet accuracy on its scoring split)
    flops: int  # target executed FLOPs
    accuracies: tuple[float, ...]  # stand-alone accuracy per seed (test split)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))


def _tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b; 0 where either side is constant (no ranking to agree with)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.kendalltau(x, y).statistic)


def _rho(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _near(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(a, b)


def equal_cost_pairs(flops: Sequence[float], tolerance: float) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose FLOPs are within ``tolerance`` of the larger of the two."""
    n = len(flops)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if _near(flops[i], flops[j], tolerance)]


def equal_cost_tau(
    predictor: Sequence[float], truth: Sequence[float], pairs: Sequence[tuple[int, int]]
) -> float | None:
    """(concordant - discordant) / len(pairs) over ``pairs``; ties on either side count 0. None without pairs."""
    if not pairs:
        return None
    total = 0.0
    for i, j in pairs:
        total += np.sign(predictor[i] - predictor[j]) * np.sign(truth[i] - truth[j])
    return float(total / len(pairs))


def partial_tau(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Kendall's partial τ of x and y given z (Kendall 1942); 0 where z explains x or y entirely."""
    txy, txz, tyz = _tau(x, y), _tau(x, z), _tau(y, z)
    denominator = math.sqrt(max(0.0, (1 - txz**2) * (1 - tyz**2)))
    return 0.0 if denominator == 0 else (txy - txz * tyz) / denominator


def _figures(rows: Sequence[Measured], accuracies: Sequence[float], picked: str | None, tolerance: float) -> dict:
    score = [r.score for r in rows]
    flops = [float(r.flops) for r in rows]
    # A bootstrap sample may hold a configuration twice: that pair says nothing about ranking.
    pairs = [(i, j) for i, j in equal_cost_pairs(flops, tolerance) if rows[i].key != rows[j].key]
    eq_score = equal_cost_tau(score, accuracies, pairs)
    eq_flops = equal_cost_tau(flops, accuracies, pairs)
    out = {
        "kendall": _tau(score, accuracies),
        "spearman": _rho(score, accuracies),
        "flops_kendall": _tau(flops, accuracies),
        "partial_kendall": partial_tau(score, accuracies, flops),
        "equal_cost_kendall": eq_score,
        "equal_cost_flops_kendall": eq_flops,
        "equal_cost_advantage": None if eq_score is None else eq_score - eq_flops,
    }
    if picked is not None:
        chosen = [a for r, a in zip(rows, accuracies, strict=True) if r.key == picked]
        out["regret"] = max(accuracies) - chosen[0] if chosen else None
    return out


def minimum_detectable_difference(seed_std: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference between two configurations' means over ``seeds`` seeds each that a
    two-sided test at level ``alpha`` detects with probability ``power``, for a seed standard deviation
    ``seed_std``: (z_{1-alpha/2} + z_{power}) · seed_std · √(2 / seeds) (normal approximation)."""
    if seeds < 1 or seed_std < 0:
        raise ValueError(f"seeds={seeds} must be positive and seed_std={seed_std} non-negative")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * seed_std * math.sqrt(2 / seeds))


def resolution(rows: Sequence[Measured]) -> dict[str, float | None]:
    """How finely the stand-alone ground truth resolves: the median standard error of a configuration's
    mean over its seeds, against the median absolute difference between two configurations."""
    errors = [float(np.std(r.accuracies, ddof=1) / math.sqrt(len(r.accuracies))) for r in rows if len(r.accuracies) > 1]
    means = [r.accuracy for r in rows]
    gaps = [abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]
    seed_std = (
        float(np.median([np.std(r.accuracies, ddof=1) for r in rows if len(r.accuracies) > 1])) if errors else None
    )
    seeds = min(len(r.accuracies) for r in rows)
    return {
        "median_standard_error": float(np.median(errors)) if errors else None,
        "median_seed_std": seed_std,
        "median_pair_difference": float(np.median(gaps)) if gaps else None,
        "minimum_detectable_difference": None if seed_std is None else minimum_detectable_difference(seed_std, seeds),
    }


def fidelity(
    rows: Sequence[Measured],
    *,
    picked: str | None = None,
    tolerance: float = 0.10,
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the module docstring, each as ``{"value", "low", "high"}`` (95% bootstrap).

    Args:
        rows: the validated configurations (at least 3).
        picked: the key of the configuration the study recommends (for the regret), if any.
        tolerance: relative FLOPs difference under which two configurations count as equal-cost.
        resamples: bootstrap resamples.
        seed: the bootstrap's random seed (the same rows and seed give the same intervals).
    """
    if len(rows) < 3:
        raise ValueError(f"fidelity needs at least 3 validated configurations, got {len(rows)}")
    point = _figures(rows, [r.accuracy for r in rows], picked, tolerance)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in point}
    n = len(rows)
    for _ in range(resamples):
        index = rng.integers(0, n, n)
        sample = [rows[i] for i in index]
        accuracies = [float(np.mean(rng.choice(r.accuracies, len(r.accuracies)))) for r in sample]
        for key, value in _figures(sample, accuracies, picked, tolerance).items():
            if value is not None:
                draws[key].append(value)
    figures: dict[str, Any] = {}
    for key, value in point.items():
        if value is None:
            figures[key] = None
            continue
        low, high = np.percentile(draws[key], [2.5, 97.5]) if draws[key] else (math.nan, math.nan)
        figures[key] = {"value": value, "low": float(low), "high": float(high)}
    pairs = equal_cost_pairs([float(r.flops) for r in rows], tolerance)
    advantage = figures["equal_cost_advantage"]
    power = resolution(rows)
    return {
        "configurations": n,
        "seeds": sorted({len(r.accuracies) for r in rows}),
        "equal_cost_pairs": len(pairs),
        "tolerance": tolerance,
        "resamples": resamples,
        **figures,
        "resolution": power,
        "verdict": verdict(figures["kendall"], figures["flops_kendall"], advantage)
        + power_sentence(power["minimum_detectable_difference"], min(len(r.accuracies) for r in rows)),
    }


def power_sentence(mdd: float | None, seeds: int) -> str:
    """What the ground truth can resolve, said beside a verdict."""
    if mdd is None:
        return (
            " One seed per configuration: the ground truth's own noise is unmeasured, so no difference is resolvable."
        )
    return (
        f" With {seeds} seed(s) per configuration the validation resolves differences of {100 * mdd:.1f} points "
        f"or more ({100 * ALPHA:.0f}% test, {100 * POWER:.0f}% power); smaller ones go unseen."
    )


def verdict(kendall: dict, flops_kendall: dict, advantage: dict | None) -> str:
    """One plain sentence on whether the scores rank better than FLOPs alone."""
    overall = (
        f"Over the FLOPs range the scores rank with τ = {kendall['value']:.2f} "
        f"[{kendall['low']:.2f}, {kendall['high']:.2f}], FLOPs alone with τ = {flops_kendall['value']:.2f}."
    )
    if advantage is None:
        return overall + " No pair of near-equal cost was validated, so the cost-controlled ranking is unmeasured."
    if advantage["low"] > 0:
        tail = " At equal cost the scores rank better than FLOPs: the search adds information."
    elif advantage["high"] < 0:
        tail = " At equal cost the scores rank worse than FLOPs: the search misleads."
    else:
        tail = (
            " At equal cost the scores rank no better than FLOPs within the noise (the interval of the "
            "difference holds 0): a tie, so the search adds nothing measurable over choosing by cost."
        )
    return overall + tail
