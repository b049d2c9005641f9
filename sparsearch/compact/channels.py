"""Channel pruning of compacted GateConnect networks with torch-pruning, honouring grouped convolutions.

Only the inner channels of each branch are pruned: the outputs of its 1×1 reduce and of its 3×3
convolution. Block outputs stay, as the residual sums tie them across branches and modules.
torch-pruning's ``MetaPruner`` chooses the channels (its importance criterion, ``round_to``, and
``in/out_channel_groups`` so that every branch keeps the same number); the choice is recorded as
``channels`` edits and applied by :func:`prune_inner`, which is also what rebuilds a saved model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.compact.modules import BranchModule, slice_bn
from sparsearch.errors import ConfigError

__all__ = ["choose_channels", "prune_channels", "prune_inner"]

LAYERS = ("reduce", "conv")  # a BranchModule's convolutions whose outputs may be pruned


def _importance(name: str):
    import torch_pruning as tp

    if name == "random":
        return tp.importance.RandomImportance()
    return tp.importance.MagnitudeImportance(p=1 if name == "l1" else 2)


def choose_channels(
    model: nn.Module, example: Tensor, ratio: float, importance: str, round_to: int
) -> list[dict[str, Any]]:
    """``channels`` edits: per BranchModule of ``model`` and layer, the output channels to keep.

    ``model`` is pruned in place by torch-pruning while choosing; use a copy.
    """
    import torch_pruning as tp

    blocks = {name: m for name, m in model.named_modules() if isinstance(m, BranchModule)}
    if not blocks:
        raise ConfigError("--channels prunes the branches of GateConnect networks; this model has none")
    targets = {getattr(m, layer): (name, layer) for name, m in blocks.items() for layer in LAYERS}
    ignored = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) and m not in targets]
    out_groups = {getattr(m, layer): m.branches for m in blocks.values() for layer in LAYERS}
    in_groups = {getattr(m, layer): m.branches for m in blocks.values() for layer in ("conv", "expand")}
    sizes = {key: layer.out_channels for layer, key in targets.items()}
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=_importance(importance),
        pruning_ratio=ratio,
        ignored_layers=ignored,
        round_to=round_to,
        out_channel_groups=out_groups,
        in_channel_groups=in_groups,
    )
    removed: dict[tuple[str, str], list[int]] = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            layer = dep.target.module
            if layer in targets and dep.handler.__name__.startswith("prune_out_channels"):
                removed[targets[layer]] = sorted(int(i) for i in idxs)
        group.prune()
    edits = []
    for (name, layer), gone in sorted(removed.items()):
        keep = [c for c in range(sizes[(name, layer)]) if c not in set(gone)]
        edits.append({"op": "channels", "module": name, "layer": layer, "keep": keep})
    return edits


def _per_group(keep: list[int], groups: int, width: int) -> list[list[int]]:
    """Local indices kept in each group of ``width`` channels; every group must keep the same number."""
    local = [[c - g * width for c in keep if g * width <= c < (g + 1) * width] for g in range(groups)]
    if len({len(g) for g in local}) != 1 or not local[0]:
        raise ValueError(f"channels must be kept in equal positive numbers per branch, got {[len(g) for g in local]}")
    return local


@torch.no_grad()
def prune_inner(block: BranchModule, layer: str, keep: list[int]) -> None:
    """Keep the output channels ``keep`` of ``block.reduce`` or ``block.conv`` (and the inputs they feed)."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    n = block.branches
    producer = getattr(block, layer)
    consumer = block.conv if layer == "reduce" else block.expand
    width = producer.out_channels // n
    local = _per_group(keep, n, width)
    index = torch.tensor(keep)
    producer.weight = nn.Parameter(producer.weight[index].clone())
    producer.out_channels = len(keep)
    bn = "bn_reduce" if layer == "reduce" else "bn_conv"
    setattr(block, bn, slice_bn(getattr(block, bn), index))
    rows = consumer.weight.view(n, -1, *consumer.weight.shape[1:])  # (groups, out/group, in/group, kh, kw)
    cols = torch.stack([rows[g][:, torch.tensor(local[g])] for g in range(n)])
    consumer.weight = nn.Parameter(cols.reshape(-1, *cols.shape[2:]).clone())
    consumer.in_channels = len(keep)
    if layer == "reduce":
        block.width = len(keep) // n
    else:
        block.conv_width = len(keep) // n


def prune_channels(
    model: nn.Module, example: Tensor, ratio: float, importance: str, round_to: int
) -> list[dict[str, Any]]:
    """Prune ``model`` in place (the branches of its GateConnect modules); returns the edits applied."""
    import copy

    edits = choose_channels(copy.deepcopy(model), example, ratio, importance, round_to)
    for edit in edits:
        prune_inner(model.get_submodule(edit["module"]), edit["layer"], edit["keep"])
    return edits
