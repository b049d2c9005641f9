"""A toy network family in one file: the whole of what a new family writes (tests/test_family_contract.py).

``ToyConfig`` declares the contract (one knob unit ``body`` of C parallel 3×3 convolutions, of which the
first k run), ``ToyNet`` is its module, ``count_toy`` its exact cost; importing this file registers all
three, and the layout ``toy`` that a space's ``target: {model: toy}`` names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.config import KnobUnit, NetworkFamily, TaskFit, register_family, register_layout
from sparsearch.config.family import build_fields
from sparsearch.cost import CostReport, LayerCost, register_count
from sparsearch.cost.formulas import conv_macs, conv_params, linear_macs, linear_params
from sparsearch.errors import ConfigError
from sparsearch.models import Network, register_builder

UNIT = "body"


@register_family
@dataclass(frozen=True)
class ToyConfig(NetworkFamily):
    """A stem, C parallel 3×3 paths of which the first k run and are summed, a pooled linear head."""

    family = "toy"
    description = "a toy network"
    scales_depth = False

    input_size: int = 16
    in_channels: int = 3
    channels: int = 8  # of the stem and of every path
    paths: int = 4  # C
    k: int = 0  # paths run; 0 means all
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.k == 0:
            object.__setattr__(self, "k", self.paths)
        if not 1 <= self.k <= self.paths:
            raise ConfigError(f"k={self.k} must be in 1..{self.paths}")

    def knob_units(self) -> tuple[KnobUnit, ...]:
        return (KnobUnit(UNIT, 1, self.paths, ("k",), (), {"k": (self.k,)}),)

    def with_knobs(self, **knobs: Any) -> ToyConfig:
        if set(knobs) - {"k"}:
            raise ConfigError(f"a toy network takes the knob k, not {sorted(set(knobs) - {'k'})}")
        k = knobs.get("k")
        if isinstance(k, dict):  # {unit: value}, as a space gives it
            k = k.get(UNIT)
        return self if k is None else replace(self, k=k)

    def scaled(self, width: float, depth: tuple[int, ...] | None) -> ToyConfig:
        return replace(self, channels=max(1, round(self.channels * width)))

    def for_task(self, fit: TaskFit) -> ToyConfig:
        if fit.task != "classification":
            raise ConfigError(f"a toy network classifies; it cannot host {fit.task}")
        return replace(self, in_channels=fit.in_channels, num_classes=fit.classes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyConfig:
        return build_fields(cls, data, "model config")


class ToyNet(Network):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config, c = config, config.channels
        self.stem = nn.Conv2d(config.in_channels, c, 3, 1, 1)
        self.paths = nn.ModuleList(nn.Conv2d(c, c, 3, 1, 1) for _ in range(config.paths))
        self.head = nn.Linear(c, config.num_classes)
        self.k = config.k

    def set_knobs(self, config: ToyConfig) -> None:
        self.k = config.k

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(sum(path(h) for path in self.paths[: self.k]))  # the first k paths only
        return self.head(h.mean(dim=(2, 3)))  # (B, classes)


def count_toy(config: ToyConfig) -> CostReport:
    hw, c = (config.input_size, config.input_size), config.channels
    stem = conv_macs(config.in_channels, c, 3, hw)
    path = conv_macs(c, c, 3, hw)
    head = linear_macs(c, config.num_classes)
    return CostReport(
        (
            LayerCost("stem", "conv", stem, stem, conv_params(config.in_channels, c, 3, bias=True)),
            LayerCost(
                UNIT, "paths", path * config.paths, path * config.k, config.paths * conv_params(c, c, 3, bias=True)
            ),
            LayerCost("head", "classifier", head, head, linear_params(c, config.num_classes)),
        )
    )


def toy(input_size: int = 16, channels: int = 8, paths: int = 4, num_classes: int = 10) -> ToyConfig:
    """The toy family's one layout."""
    return ToyConfig(input_size=input_size, channels=channels, paths=paths, num_classes=num_classes)


register_builder(ToyConfig, ToyNet)
register_count(ToyConfig, count_toy)
register_layout("toy", toy)
