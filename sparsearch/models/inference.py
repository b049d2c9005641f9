"""The inference form of a network: what eval's timing, the latency figures and the exports run.

``for_inference(model)`` returns an eval-mode copy that computes what ``model.eval()`` computes, with what
inference engines do before they run a network:

- every top-k block becomes a :class:`~sparsearch.layers.FusedTopKBottleneck` (batch norms folded into
  the path and shortcut weights, bias, residual and ReLU fused into the products, paths gathered whole);
- a convolution followed by a batch norm in a ``nn.Sequential`` (the stem, a head, a user's blocks)
  becomes one convolution with a bias;
- a ReLU followed by a max-pool in a ``nn.Sequential`` is swapped (the max of ReLUs is the ReLU of the
  max, padding included: the pool pads with -inf), so the ReLU passes over a quarter of the values;
- a convolution followed by a max-pool (a stem, once the ReLU has moved) runs in channels-last, where
  the pool is fast, converting the small input instead of the large unpooled grid
  (:class:`~sparsearch.layers.pool.ChannelsLastConvPool`).

The copy shares nothing with ``model``; equal to it within float rounding (checked in float64 by the
tests).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsearch.layers import TopKBottleneck
from sparsearch.layers.fused_topk import STRATEGIES, FusedTopKBottleneck, fold_batch_norm
from sparsearch.layers.pool import ChannelsLastConvPool

__all__ = ["STRATEGIES", "for_inference"]


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale, shift = fold_batch_norm(bn)
        bias = shift if conv.bias is None else conv.bias * scale + shift
        folded.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
        folded.bias = nn.Parameter(bias, requires_grad=False)
    return folded


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _fused_sequential(seq: nn.Sequential) -> None:
    """Conv + BN pairs folded, ReLU + max-pool pairs swapped, conv + max-pool pairs pooled in channels-last,
    in place; repeated until nothing changes (a ReLU moved past a pool brings the convolution next to it)."""
    items = list(seq)
    while True:
        rewritten = _rewrite(items)
        if len(rewritten) == len(items) and all(a is b for a, b in zip(rewritten, items, strict=True)):
            break
        items = rewritten
    if len(items) != len(seq) or any(a is not b for a, b in zip(items, seq, strict=True)):
        del seq[:]
        for m in items:
            seq.append(m)


def _rewrite(items: list[nn.Module]) -> list[nn.Module]:
    """One left-to-right pass of the pair rules."""
    out: list[nn.Module] = []
    i = 0
    while i < len(items):
        here, after = items[i], items[i + 1] if i + 1 < len(items) else None
        pool_next = isinstance(after, nn.MaxPool2d) and _pads_only(after)
        if after is not None and _foldable(here, after):
            out.append(_folded_conv(here, after))
        elif pool_next and type(here) is nn.ReLU:
            out += [after, nn.ReLU(inplace=True)]
        elif pool_next and type(here) is nn.Conv2d:
            out.append(ChannelsLastConvPool(here, after))
        else:
            out.append(here)
            i += 1
            continue
        i += 2
    return out


def _pads_only(pool: nn.MaxPool2d) -> bool:
    """A max-pool whose windows hold real values or -inf padding only (no indices returned)."""
    return not pool.return_indices


def for_inference(model: nn.Module, strategy: str = "gather") -> nn.Module:
    """An eval-mode copy of ``model`` in its inference form (see the module docstring); ``strategy`` is the
    top-k blocks' (``"gather"`` or ``"grouped"``, :mod:`sparsearch.layers.fused_topk`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    copied = copy.deepcopy(model).eval()
    if isinstance(copied, TopKBottleneck):  # a block alone
        return FusedTopKBottleneck.from_block(copied, strategy)
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TopKBottleneck):
                setattr(parent, name, FusedTopKBottleneck.from_block(child, strategy))
        if isinstance(parent, nn.Sequential):
            _fused_sequential(parent)
    return copied
