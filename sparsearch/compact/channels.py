"""Channel pruning of compacted GateConnect networks with torch-pruning, honouring grouped convolutions.

Only the inner channels of each branch are pruned: the outputs of its 1×1 reduce and of its 3×3
convolution. Block outputs stay, as the residual sums tie them across branches and modules.
torch-pruning's ``MetaPruner`` chooses the channels (its importance criterion, ``round_to``, and
``in/out_channel_groups`` so that every branch keeps the same number); the choice is recorded as
``channels`` edits and applied by :func:`sparsearch.models.edits.prune_inner`, which also rebuilds a
saved model.
"""

from __future__ import annotations

from torch import Tensor, nn

from sparsearch.errors import ConfigError
from sparsearch.layers import BranchModule
from sparsearch.models.edits import LAYERS, Edit, prune_inner

__all__ = ["choose_channels", "prune_channels"]


def _importance(name: str):
    import torch_pruning as tp

    if name == "random":
        return tp.importance.RandomImportance()
    return tp.importance.MagnitudeImportance(p=1 if name == "l1" else 2)


def choose_channels(model: nn.Module, example: Tensor, ratio: float, importance: str, round_to: int) -> list[Edit]:
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
        edits.append(Edit("channels", name, {"layer": layer, "keep": keep}))
    return edits


def prune_channels(model: nn.Module, example: Tensor, ratio: float, importance: str, round_to: int) -> list[Edit]:
    """Prune ``model`` in place (the branches of its GateConnect modules); returns the edits applied."""
    import copy

    edits = choose_channels(copy.deepcopy(model), example, ratio, importance, round_to)
    for edit in edits:
        prune_inner(model.get_submodule(edit.module), edit.args["layer"], edit.args["keep"])
    return edits
