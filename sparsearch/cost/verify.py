"""Cross-checks of the analytic count on a built model: FlopCounterMode and thop.

- ``FlopCounterMode`` counts every convolution and matrix product that runs (the sparse execution of
  top-k blocks); it must equal the analytic *executed* FLOPs exactly.
- thop counts per module type. Batch norm and pooling are set to zero (thop counts 2 operations per
  element for BN and one per element for average pooling, which the FLOPs convention leaves out).
  Static top-k blocks (all paths, no gate, one expert) run their masked execution so that thop
  counts their nn.Conv2d children itself; conditional blocks and GateConnect modules, whose work
  happens in functional calls thop cannot see, get hooks that apply the analytic formula to the
  module's own attributes and input shape (:mod:`sparsearch.cost.modules`, as the walk over a network
  does); so do CondConv2d and CondLinear (their mixed form).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.config import NetworkFamily
from sparsearch.cost.count import check_model_size, count
from sparsearch.cost.modules import condconv_macs, condlinear_macs, gateconnect_cost, topk_cost
from sparsearch.layers import CondConv2d, CondLinear, GateConnectModule, TopKBottleneck
from sparsearch.models import build_model, find_network

__all__ = ["flop_counter_flops", "is_static", "thop_macs", "verify_config"]


def flop_counter_flops(model: nn.Module, *inputs: Tensor) -> int:
    """FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` measures for one forward pass."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


def is_static(block: TopKBottleneck) -> bool:
    """Every path runs, without a gate or experts: an ordinary ResNeXt block."""
    return block.k == block.cardinality and block.experts == 1 and block.gate.routing.name == "constant"


def _zero(module: nn.Module, inputs: Any, output: Any) -> None:
    module.total_ops += 0


def _topk_hook(module: TopKBottleneck, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    x = inputs[0]
    _, executed, _ = topk_cost(module, tuple(x.shape[2:]), tuple(output.shape[2:]))
    module.total_ops += x.shape[0] * executed


def _gateconnect_hook(module: GateConnectModule, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    x = inputs[0]  # (B, inputs, in, H, W)
    macs, _ = gateconnect_cost(module, tuple(x.shape[3:]), tuple(output.shape[3:]))
    module.total_ops += x.shape[0] * macs


def _condconv_hook(module: CondConv2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    module.total_ops += inputs[0].shape[0] * condconv_macs(module, tuple(output.shape[2:]))


def _condlinear_hook(module: CondLinear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    module.total_ops += inputs[0].shape[0] * condlinear_macs(module)


@contextmanager
def _masked_static_blocks(model: nn.Module):
    blocks = [m for m in model.modules() if isinstance(m, TopKBottleneck) and is_static(m)]
    saved = [b.execution for b in blocks]
    for b in blocks:
        b.execution = "masked"
    try:
        yield blocks
    finally:
        for b, e in zip(blocks, saved, strict=True):
            b.execution = e


def thop_macs(model: nn.Module, *inputs: Tensor) -> int:
    """Multiply-accumulates that thop counts, with the hooks described in the module docstring."""
    import thop  # heavy and optional at import time

    custom: dict[type, Any] = {
        nn.BatchNorm2d: _zero,
        nn.AdaptiveAvgPool2d: _zero,
        GateConnectModule: _gateconnect_hook,
        CondConv2d: _condconv_hook,
        CondLinear: _condlinear_hook,
    }
    with _masked_static_blocks(model) as static:
        if any(isinstance(m, TopKBottleneck) and m not in static for m in model.modules()):
            custom[TopKBottleneck] = _topk_hook  # by type: static blocks then use the formula too
        macs, _ = thop.profile(model, inputs=inputs, custom_ops=custom, verbose=False)
    for m in model.modules():  # thop leaves its counters behind as buffers
        for name in ("total_ops", "total_params"):
            if name in m._buffers:
                del m._buffers[name]
    return round(macs)


def verify_config(config: NetworkFamily) -> dict[str, int]:
    """Build ``config`` and count one example three ways: analytic, FlopCounterMode and thop (FLOPs)."""
    check_model_size(config)
    model = build_model(config).eval()
    inputs = find_network(model).example_inputs()
    return {
        "analytic_flops": count(config).executed_flops,
        "flop_counter_flops": flop_counter_flops(model, *inputs),
        "thop_flops": 2 * thop_macs(model, *inputs),
    }
