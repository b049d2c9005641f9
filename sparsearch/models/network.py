"""The built side of the family contract: what the tool asks of a family's network module.

Every family's module subclasses :class:`Network`: it keeps the configuration it was built from
(``config``) and sets the elastic knobs of another configuration of the same shape on its weights
(:meth:`Network.set_knobs`, what a weight-sharing supernet does per sub-network). A model that hosts a
network (the VQA model) holds it as ``backbone``; :func:`find_network` finds it either way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparsearch.config import NetworkFamily
from sparsearch.errors import ConfigError

__all__ = ["Network", "find_network"]


class Network(nn.Module):
    """A family's network module, built from ``config``."""

    config: NetworkFamily

    def example_inputs(self, batch: int = 1) -> tuple[Tensor, ...]:
        """Random inputs of ``batch`` examples, as ``forward`` takes them (what counters and exports run):
        the image, and the gates' condition where the network has one."""
        c = self.config
        image = torch.randn(batch, getattr(c, "in_channels", 3), c.input_size, c.input_size)
        cond_dim = getattr(c, "cond_dim", None)
        return (image,) if cond_dim is None else (image, torch.randn(batch, cond_dim))

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
