"""The evaluation modes of a study (``--eval``): each an :class:`~sparsearch.study.evaluator.Evaluator`.

A new mode is a subclass in its own file, registered here by name (and added to
:data:`sparsearch.choices.EVAL_MODES`, the command line's table, which a test keeps equal to this one).
"""

from __future__ import annotations

from sparsearch.errors import ConfigError
from sparsearch.study.evaluator import Evaluator
from sparsearch.study.supernet_evaluator import SupernetEvaluator
from sparsearch.study.train_evaluator import TrainEvaluator

__all__ = ["EVALUATORS", "evaluator_class", "make_evaluator"]

EVALUATORS: dict[str, type[Evaluator]] = {e.name: e for e in (SupernetEvaluator, TrainEvaluator)}


def evaluator_class(name: str) -> type[Evaluator]:
    """The evaluator of mode ``name``, or a one-line error listing the modes."""
    try:
        return EVALUATORS[name]
    except KeyError:
        raise ConfigError(f"eval={name!r}; allowed: {', '.join(EVALUATORS)}") from None


def make_evaluator(settings, space, device, artifacts, log=None, runtime=None) -> Evaluator:
    """The evaluator of ``settings.eval`` for one study in this process (``runtime``: a torchrun job's)."""
    return evaluator_class(settings.eval)(settings, space, device, artifacts, log, runtime)
