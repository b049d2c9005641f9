"""Optuna samplers by name: the table the settings check and the CLI offers its choices from.

Optuna is imported when a sampler is made, so reading the names costs nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

__all__ = ["SAMPLERS", "make_sampler"]


def _tpe(seed: int | None) -> BaseSampler:
    from optuna.samplers import TPESampler

    return TPESampler(seed=seed, multivariate=True)


def _nsga2(seed: int | None) -> BaseSampler:
    from optuna.samplers import NSGAIISampler

    return NSGAIISampler(seed=seed, population_size=20)


def _gp(seed: int | None) -> BaseSampler:
    from optuna.samplers import GPSampler

    return GPSampler(seed=seed)


def _random(seed: int | None) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=seed)


SAMPLERS: dict[str, Callable[[int | None], BaseSampler]] = {"tpe": _tpe, "nsga2": _nsga2, "gp": _gp, "random": _random}


def make_sampler(name: str, seed: int | None) -> BaseSampler:
    """The sampler ``name`` seeded with ``seed`` (the names are checked by the study settings)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed)
