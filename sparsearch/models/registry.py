"""Building modules: ``create_model(name, **config)`` builds a registered layout."""

from __future__ import annotations

from torch import nn

from sparsearch.config import CondNetConfig, NetConfig, UserNetConfig, layout
from sparsearch.models.condconv_nets import CondNet
from sparsearch.models.resnext import SparseResNeXt

__all__ = ["build_model", "create_model"]


def create_model(name: str, **config: object) -> nn.Module:
    """Build layout ``name``: e.g. ``create_model("resnext101_32x4d", input_size=448, k=16,
    routing="softmax")`` or ``create_model("cc_mobilenet_v1", width=0.5, experts=8)``."""
    return build_model(layout(name, **config))


def build_model(config: NetConfig | CondNetConfig | UserNetConfig) -> nn.Module:
    """The module of a configuration, whichever family it belongs to (a user's network: its factory's
    model, converted; see :mod:`sparsearch.models.user`)."""
    if isinstance(config, UserNetConfig):
        from sparsearch.models.user import build_user_model

        return build_user_model(config)
    return CondNet(config) if isinstance(config, CondNetConfig) else SparseResNeXt(config)
