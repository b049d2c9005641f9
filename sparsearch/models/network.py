"""The built side of the family contract: what the tool asks of a family's network module.

Every family's module subclasses :class:`Network`: it keeps the configuration it was built from
(``config``) and sets the elastic knobs of another configuration of the same shape on its weights
(:meth:`Network.set_knobs`, what a weight-sharing supernet does per sub-network). A model that hosts a
network (the VQA model) holds it as ``backbone``; :func:`find_network` finds it either way.
"""

from __future__ import annotations

from torch import nn

from sparsearch.config import NetworkFamily
from sparsearch.errors import ConfigError

__all__ = ["Network", "find_network"]


class Network(nn.Module):
    """A family's network module, built from ``config``."""

    config: NetworkFamily

    def set_knobs(self, config: NetworkFamily) -> None:
        """Run as ``config`` (same shapes, other k or fan-in) with the same weights.

        A family without elastic knobs refuses: its supernets cannot share weights across them."""
        raise ConfigError(f"{self.config.description} has no elastic knob (k or fan-in) to set on shared weights")


def find_network(model: nn.Module) -> Network:
    """The family network of a model: itself, or its ``backbone`` (the VQA model)."""
    if isinstance(model, Network):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, Network):
        return backbone
    raise TypeError(f"no sparsearch network in {type(model).__name__}")
