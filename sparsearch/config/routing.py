"""Routing function names and hidden-layer sizes: the table that configurations are checked against.

The implementations are nn.Modules in :mod:`sparsearch.layers.routing`, registered against these
names; a routing registered there is declared here too, so configurations accept it.
"""

from __future__ import annotations

__all__ = ["HIDDEN_SIZES", "declare_routing", "routing_names"]

# Hidden-layer width as a multiple of the input width (seed 001, Table 6: small, medium, large).
HIDDEN_SIZES: dict[str, float | None] = {"none": None, "small": 1 / 8, "medium": 1.0, "large": 8.0}

_NAMES: set[str] = {"constant", "noisy_topk", "relu_l1", "sigmoid", "softmax"}


def declare_routing(name: str) -> None:
    """Add ``name`` to the routing functions a configuration may name."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a routing name must be an identifier, got {name!r}")
    _NAMES.add(name)


def routing_names() -> list[str]:
    """Names of the routing functions, sorted."""
    return sorted(_NAMES)
