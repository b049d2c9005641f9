"""Pure cost formulas: shapes -> multiply-accumulates (MACs) or parameters, one per layer kind.

They count what ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions and matrix
products; FLOPs = 2 × MACs). Batch norm, activations, pooling, additions and gathers are not counted.
"""

from __future__ import annotations

from sparsearch.config import HIDDEN_SIZES

__all__ = [
    "bn_params",
    "conv_macs",
    "conv_params",
    "linear_macs",
    "linear_params",
    "routing_macs",
    "routing_params",
]


def conv_macs(cin: int, cout: int, kernel: int, out_hw: tuple[int, int], groups: int = 1) -> int:
    """A k×k convolution: cout · cin/groups · k · k per output position."""
    return cout * (cin // groups) * kernel * kernel * out_hw[0] * out_hw[1]


def conv_params(cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = False) -> int:
    return cout * (cin // groups) * kernel * kernel + (cout if bias else 0)


def linear_macs(fin: int, fout: int) -> int:
    return fin * fout


def linear_params(fin: int, fout: int, bias: bool = True) -> int:
    return fin * fout + (fout if bias else 0)


def bn_params(channels: int) -> int:
    """Weight and bias; the running statistics are buffers, not parameters."""
    return 2 * channels


def _trunk(fin: int, outputs: int, hidden: str) -> list[tuple[int, int]]:
    factor = HIDDEN_SIZES[hidden]
    if factor is None:
        return [(fin, outputs)]
    width = max(1, round(fin * factor))
    return [(fin, width), (width, outputs)]


def routing_macs(kind: str, fin: int, experts: int, channels: int | None = None, hidden: str = "none") -> int:
    """Per example, at inference (noisy top-k draws no noise in eval)."""
    if kind == "constant":
        return 0
    return sum(linear_macs(a, b) for a, b in _trunk(fin, experts * (channels or 1), hidden))


def routing_params(kind: str, fin: int, experts: int, channels: int | None = None, hidden: str = "none") -> int:
    if kind == "constant":
        return 0
    outputs = experts * (channels or 1)
    params = sum(linear_params(a, b) for a, b in _trunk(fin, outputs, hidden))
    if kind == "noisy_topk":
        params += linear_params(fin, outputs)  # the noise scale projection
    return params
