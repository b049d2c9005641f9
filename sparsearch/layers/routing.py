"""Routing functions: a feature vector per example -> one weight per expert (or per expert and channel).

Every routing function shares the same trunk (seed 001, §4.3.3): an optional hidden layer with ReLU,
then a linear map to ``num_experts`` logits (``num_experts * channels`` for per-channel routing), then a
normalisation that defines the function. They return both the normalised ``weights`` and the ``scores``
that rank the experts: the scores are the logits (noisy logits for noisy top-k), which order the experts
as the weights do but keep distinct values where the normalisation clips (ReLU) to equal zeros.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.config.routing import HIDDEN_SIZES, declare_routing, routing_names

__all__ = [
    "HIDDEN_SIZES",
    "Routing",
    "RoutingOutput",
    "SelectedRouting",
    "create_routing",
    "register_routing",
    "routing_names",
]


class RoutingOutput(NamedTuple):
    """Weights used to combine experts and the scores that rank them; both (B, n) or (B, n, channels)."""

    weights: Tensor
    scores: Tensor


class Routing(nn.Module, ABC):
    """Base class: optional hidden layer -> linear logits -> :meth:`normalise` over the expert dim.

    Subclasses set ``name`` and implement :meth:`normalise`; the expert dimension is dim 1.

    Args:
        in_features: width of the feature vector of each example.
        num_experts: number of experts (or paths) to weight.
        channels: if given, one weight per expert and output channel (per-channel routing).
        hidden: ``"none"``, ``"small"`` (in/8), ``"medium"`` (in) or ``"large"`` (8·in).
        k: number of experts kept by routing functions that select (noisy top-k); ignored otherwise.
    """

    name: ClassVar[str]
    has_parameters: ClassVar[bool] = True

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        *,
        channels: int | None = None,
        hidden: str = "none",
        k: int | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_experts < 1:
            raise ValueError(f"routing needs in_features >= 1 and num_experts >= 1, got {in_features=}, {num_experts=}")
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be a positive int or None, got {channels=}")
        if hidden not in HIDDEN_SIZES:
            raise ValueError(f"hidden must be one of {sorted(HIDDEN_SIZES)}, got {hidden=!r}")
        self.in_features = in_features
        self.num_experts = num_experts
        self.channels = channels
        self.hidden = hidden
        self.k = k
        outputs = num_experts * (channels or 1)
        factor = HIDDEN_SIZES[hidden]
        if not self.has_parameters:
            self.trunk: nn.Module = nn.Identity()
        elif factor is None:
            self.trunk = nn.Linear(in_features, outputs)
        else:
            width = max(1, round(in_features * factor))
            self.trunk = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Linear(width, outputs))

    def logits(self, features: Tensor) -> Tensor:
        """(B, in_features) -> (B, n) or (B, n, channels) logits."""
        z = self.trunk(features)
        if self.channels is not None:
            z = z.view(z.shape[0], self.num_experts, self.channels)  # (B, n, channels)
        return z

    @abstractmethod
    def normalise(self, logits: Tensor) -> Tensor:
        """Logits -> weights, normalised over the expert dim (dim 1)."""

    def forward(self, features: Tensor) -> RoutingOutput:
        z = self.logits(features)
        return RoutingOutput(self.normalise(z), z)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.num_experts}, channels={self.channels}, hidden={self.hidden!r}"


_ROUTINGS: dict[str, type[Routing]] = {}


def register_routing(cls: type[Routing]) -> type[Routing]:
    """Class decorator adding a routing function to the registry under ``cls.name``."""
    if cls.name in _ROUTINGS:
        raise ValueError(f"routing {cls.name!r} is already registered")
    declare_routing(cls.name)
    _ROUTINGS[cls.name] = cls
    return cls


def create_routing(name: str, in_features: int, num_experts: int, **kwargs: object) -> Routing:
    """Build the routing function registered as ``name``; unknown names raise with the known ones."""
    try:
        cls = _ROUTINGS[name]
    except KeyError:
        raise ValueError(f"unknown routing {name!r}; known: {', '.join(routing_names())}") from None
    return cls(in_features, num_experts, **kwargs)  # type: ignore[arg-type]


@register_routing
class SoftmaxRouting(Routing):
    """Experts compete: weights sum to one (seed 001, Table 6 'Softmax')."""

    name = "softmax"

    def normalise(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=1)


@register_routing
class SigmoidRouting(Routing):
    """Independent weights in (0, 1): CondConv's default (seed 001, §3)."""

    name = "sigmoid"

    def normalise(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


@register_routing
class ReluL1Routing(Routing):
    """ReLU then L1 normalisation (seed 000, App. B): g' = ReLU(g) / ||ReLU(g)||₁; all-zero stays zero."""

    name = "relu_l1"

    def normalise(self, logits: Tensor) -> Tensor:
        r = F.relu(logits)
        return r / r.sum(dim=1, keepdim=True).clamp_min(1e-12)


@register_routing
class NoisyTopKRouting(Routing):
    """Noisy top-k gating (Shazeer et al. 2017).

    Softmax over the k largest of ``logits + N(0, 1)·softplus(noise_logits)``.

    The noise is drawn in training only; the remaining n - k weights are exactly zero.
    """

    name = "noisy_topk"

    def __init__(self, in_features: int, num_experts: int, **kwargs: object) -> None:
        super().__init__(in_features, num_experts, **kwargs)  # type: ignore[arg-type]
        k = self.k
        if k is None or not 1 <= k <= num_experts:
            raise ValueError(f"noisy_topk routing needs 1 <= k <= {num_experts}, got {k=}")
        # Noise scale starts at softplus(0) ≈ 0.69 for every expert, as in the paper's zero init.
        self.noise = nn.Linear(in_features, num_experts * (self.channels or 1))
        nn.init.zeros_(self.noise.weight)
        nn.init.zeros_(self.noise.bias)

    def forward(self, features: Tensor) -> RoutingOutput:
        z = self.logits(features)
        if self.training:
            std = F.softplus(self.noise(features)).view_as(z)
            z = z + torch.randn_like(z) * std
        return RoutingOutput(self.normalise(z), z)

    def normalise(self, logits: Tensor) -> Tensor:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(
            1, logits.topk(self.k, dim=1).indices, True
        )  # exactly k experts per example (and channel)
        return logits.masked_fill(~keep, float("-inf")).softmax(dim=1)


@register_routing
class ConstantRouting(Routing):
    """Every weight is one and every score equal: the 'off' value (a plain conv, a plain ResNeXt sum)."""

    name = "constant"
    has_parameters = False

    def forward(self, features: Tensor) -> RoutingOutput:
        shape = (features.shape[0], self.num_experts) + ((self.channels,) if self.channels else ())
        ones = features.new_ones(shape)
        return RoutingOutput(ones, torch.zeros_like(ones))

    def normalise(self, logits: Tensor) -> Tensor:
        return torch.ones_like(logits)


class SelectedRouting(nn.Module):
    """``routing`` with its outputs restricted to the columns ``keep`` (experts or paths).

    Every logit is still computed, so the kept weights equal the source model's.
    """

    def __init__(self, routing: nn.Module, keep: list[int]) -> None:
        super().__init__()
        self.routing = routing
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.name = routing.name
        self.has_parameters = routing.has_parameters
        self.in_features, self.num_experts = routing.in_features, len(keep)
        self.channels, self.hidden, self.k = routing.channels, routing.hidden, routing.k
        self.computed_experts = routing.num_experts  # logits computed: the source's count

    def forward(self, features: Tensor) -> RoutingOutput:
        weights, scores = self.routing(features)
        return RoutingOutput(weights.index_select(1, self.keep), scores.index_select(1, self.keep))
