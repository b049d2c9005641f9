"""Building modules: a builder registered per network family, and ``create_model(name, **config)``.

Each family's module registers its builder beside its model (:func:`register_builder`); the builder is
found by the configuration's type, so nothing here asks which family a configuration is.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sparsearch.config import NetworkFamily, TaskFit, layout

__all__ = ["build_model", "create_model", "fit_config", "register_builder"]

_BUILDERS: dict[type, tuple[Callable[..., nn.Module], Callable[..., NetworkFamily] | None]] = {}


def register_builder(
    family: type[NetworkFamily],
    build: Callable[..., nn.Module],
    *,
    refit: Callable[..., NetworkFamily] | None = None,
) -> None:
    """Build configurations of ``family`` with ``build(config)``. ``refit(config, fit)``: what fitting to
    a task's data needs beyond the configuration's own :meth:`~NetworkFamily.for_task` (a user's network
    is measured again for other classes or channels)."""
    if not (isinstance(family, type) and issubclass(family, NetworkFamily)):
        raise TypeError(f"register_builder takes a NetworkFamily subclass, got {family!r}")
    _BUILDERS[family] = (build, refit)


def _entry(config: NetworkFamily):
    for cls in type(config).__mro__:
        if cls in _BUILDERS:
            return _BUILDERS[cls]
    known = ", ".join(sorted(c.__name__ for c in _BUILDERS))
    raise TypeError(f"no builder registered for {type(config).__name__}; registered: {known}")


def create_model(name: str, **config: object) -> nn.Module:
    """Build layout ``name``: e.g. ``create_model("resnext101_32x4d", input_size=448, k=16,
    routing="softmax")`` or ``create_model("cc_mobilenet_v1", width=0.5, experts=8)``."""
    return build_model(layout(name, **config))


def build_model(config: NetworkFamily) -> nn.Module:
    """The module of a configuration, by its family's registered builder (a user's network: its factory's
    model, converted; see :mod:`sparsearch.models.user`)."""
    return _entry(config)[0](config)


def fit_config(config: NetworkFamily, fit: TaskFit) -> NetworkFamily:
    """``config`` fitted to a task's data (its channels, classes, a VQA head), as its family does it."""
    fitted = config.for_task(fit)
    refit = _entry(config)[1]
    return fitted if refit is None else refit(fitted, fit)
