"""The conditional layers under mixed precision: torch.autocast to bfloat16 on the CPU (and to bfloat16 and
float16 on CUDA when a GPU is present) gives float32's outputs within bfloat16's rounding, in both
execution forms of the top-k block, training and evaluation, and the gradients flow.

Tolerance: bfloat16 keeps 8 significant bits (relative rounding 2⁻⁸ ≈ 0.4%); through a few layers the
outputs are held to 5% of their float32 spread, the same bound for every layer."""

from __future__ import annotations

import pytest
import torch

from sparsearch.layers import CondConv2d, GateConnectModule, TopKBottleneck

TOLERANCE = 0.05

DEVICES = [("cpu", torch.bfloat16)]
if torch.cuda.is_available():
    DEVICES += [("cuda", torch.bfloat16), ("cuda", torch.float16)]


def _close(low: torch.Tensor, full: torch.Tensor) -> float:
    low, full = low.detach().float(), full.detach()
    return float((low - full).abs().max() / full.abs().max().clamp_min(1e-6))


def _compare(module: torch.nn.Module, x: torch.Tensor, device: str, dtype: torch.dtype) -> None:
    module, x = module.to(device), x.to(device)
    torch.manual_seed(1)
    full = module(x)
    with torch.autocast(device, dtype=dtype):
        torch.manual_seed(1)
        low = module(x)
    assert torch.isfinite(low).all() and _close(low, full) < TOLERANCE
    if not module.training:  # inference without gradients takes the in-place paths
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            assert _close(module(x), full) < TOLERANCE
    low.float().square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize(("device", "dtype"), DEVICES)
@pytest.mark.parametrize("execution", ["sparse", "masked"])
@pytest.mark.parametrize("training", [False, True])
def test_the_top_k_block_under_autocast(device: str, dtype: torch.dtype, execution: str, training: bool) -> None:
    torch.manual_seed(0)
    block = TopKBottleneck(16, 16, 8, 4, k=3, execution=execution, experts=2).train(training)
    if not training:  # statistics of some batches first, as a trained block has them
        with torch.no_grad():
            block.train()(torch.randn(32, 16, 8, 8))
            block.eval()
    _compare(block, torch.randn(8, 16, 8, 8), device, dtype)


@pytest.mark.parametrize(("device", "dtype"), DEVICES)
def test_condconv_under_autocast(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    _compare(CondConv2d(8, 16, 3, padding=1, num_experts=4), torch.randn(4, 8, 10, 10), device, dtype)


@pytest.mark.parametrize(("device", "dtype"), DEVICES)
def test_gateconnect_under_autocast(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    module = GateConnectModule(8, 8, 4, 2, 2, num_inputs=4).eval()
    _compare(module, torch.randn(4, 4, 8, 6, 6), device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_float16_on_the_cpu_is_refused_with_the_way_out() -> None:
    from sparsearch.errors import ConfigError
    from sparsearch.train.runtime import Runtime

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device; on the CPU use bf16"):
        Runtime(torch.device("cpu"), precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_is_exercised_when_present() -> None:  # the parametrised tests above ran on CUDA too
    assert ("cuda", torch.float16) in DEVICES
