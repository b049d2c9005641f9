"""Structural edits that turn a trained model into its compacted form, as JSON-ready records.

An edit names a submodule and says what it becomes:

- ``{"op": "branches", "module": M, "keep": [...], "sources": [[...], ...], "num_inputs": n}``: a
  GateConnect module keeps the branches ``keep``, each summing its fixed ``sources`` (indices into
  the previous module's kept outputs) -> :class:`~sparsearch.layers.BranchModule`.
- ``{"op": "paths", "module": M, "keep": [...]}``: a top-k block keeps the paths ``keep``; its gate
  still scores every path but chooses among the kept ones.
- ``{"op": "experts", "module": M, "keep": [...]}``: a CondConv group (see :func:`expert_group`)
  keeps the experts ``keep``.
- ``{"op": "fold", "module": M, "alpha": [...]}``: a CondConv group whose routing is constant becomes
  plain convolutions (linear layers) with the kernels ``Σ_i α_i W_i``; its routing goes.
- ``{"op": "channels", "module": M, "layer": "reduce" | "conv", "keep": [...]}``: a BranchModule keeps
  these output channels of a branch convolution (chosen by :mod:`~sparsearch.compact.channels`).

The same list rebuilds a compacted checkpoint: apply the edits to the freshly built source model, then
load the compacted weights. Applying an edit copies the weights it keeps, so one code path serves both.
In code an edit is an :class:`Edit`: the record above plus the ``evidence`` that justified it, which
reports show and checkpoints do not store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.errors import SparsearchError
from sparsearch.layers import (
    BranchModule,
    CondConv2d,
    CondLinear,
    GateConnectModule,
    SelectedRouting,
    TopKBottleneck,
    slice_bn,
)
from sparsearch.models.condconv_nets import CondNetBlock

__all__ = [
    "LAYERS",
    "OPS",
    "Edit",
    "EditError",
    "apply_edit",
    "apply_edits",
    "expert_group",
    "expert_groups",
    "prune_inner",
]

OPS = ("branches", "paths", "experts", "fold", "channels")
LAYERS = ("reduce", "conv")  # a BranchModule's convolutions whose outputs a channels edit may prune


class EditError(SparsearchError):
    """An edit that does not fit the model it is applied to."""


@dataclass(frozen=True)
class Edit:
    """One structural edit: ``op`` on the submodule ``module`` with the op's own fields in ``args``
    (keep, sources, num_inputs, alpha, layer), and the ``evidence`` that justified it (reports only)."""

    op: str
    module: str
    args: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] | None = None

    @classmethod
    def parse(cls, data: Any) -> Edit:
        """The edit a stored record describes (as ``config.json`` holds it); evidence is kept if present."""
        if not isinstance(data, dict) or data.get("op") not in OPS or not isinstance(data.get("module"), str):
            raise EditError(f"not an edit: {data!r}; expected an object with 'op' in {OPS} and 'module'")
        args = {k: v for k, v in data.items() if k not in ("op", "module", "evidence")}
        return cls(data["op"], data["module"], args, data.get("evidence"))

    def stored(self) -> dict[str, Any]:
        """The record a checkpoint stores: ``{"op", "module", ...args}``."""
        return {"op": self.op, "module": self.module, **self.args}

    def reported(self) -> dict[str, Any]:
        """The record with its evidence, as reports show it."""
        return self.stored() if self.evidence is None else {**self.stored(), "evidence": self.evidence}

    def moved(self, prefix: str) -> Edit:
        """The same edit on ``prefix.module`` (a network's edit applied to the model that holds it)."""
        return replace(self, module=f"{prefix}.{self.module}") if prefix else self


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _get(model: nn.Module, name: str, kinds: tuple[type, ...]) -> nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise EditError(f"edit names {name!r}, which the model does not have") from None
    if not isinstance(module, kinds):
        raise EditError(
            f"edit expects {name!r} to be {' or '.join(k.__name__ for k in kinds)}, got {type(module).__name__}"
        )
    return module


def _indices(values: Any, limit: int, what: str) -> list[int]:
    if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
        raise EditError(f"{what}: expected a non-empty list of integers, got {values!r}")
    if sorted(set(values)) != values or values[-1] >= limit or values[0] < 0:
        raise EditError(f"{what}: expected increasing indices in 0..{limit - 1}, got {values}")
    return values


# --- CondConv groups: one routing function and the layers that share its weights ---------------------


def expert_group(module: nn.Module) -> tuple[nn.Module | None, list[str]] | None:
    """(routing, names of the CondConv layers it drives) for a module that hosts experts, else None.

    A top-k block with experts routes its three path convolutions from ``expert_router``; a CondConv
    network block with a shared ``router`` drives its CondConv convolutions; a CondConv2d/CondLinear
    with its own routing function is a group of one (routing ``None``: the layer routes itself).
    """
    if isinstance(module, TopKBottleneck) and module.expert_router is not None:
        return module.expert_router, ["reduce", "conv", "expand"]
    shared = getattr(module, "shared_expert_group", None)  # a family's block whose layers share one routing
    if shared is not None and (group := shared()) is not None:
        return group
    if isinstance(module, CondConv2d | CondLinear) and module.router.name != "constant":
        return None, [""]
    return None


def expert_groups(model: nn.Module) -> dict[str, tuple[nn.Module, list[str]]]:
    """Every CondConv group of ``model``: name -> (routing function, layer names relative to it)."""
    groups = {}
    for name, module in model.named_modules():
        found = expert_group(module)
        if found is not None:
            routing, layers = found
            groups[name] = (module.router if routing is None else routing, layers)
    return groups


def _layer(host: nn.Module, name: str) -> CondConv2d | CondLinear:
    return host if name == "" else host.get_submodule(name)


def _keep_experts(host: nn.Module, keep: list[int]) -> None:
    routing, layers = expert_group(host)  # type: ignore[misc]
    index = torch.tensor(keep)
    for layer_name in layers:
        layer = _layer(host, layer_name)
        layer.weight = nn.Parameter(layer.weight.detach()[index].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.detach()[index].clone())
        layer.num_experts = len(keep)
    if routing is None:  # the layer's own routing
        host.router = SelectedRouting(host.router, keep)
    elif isinstance(host, TopKBottleneck):
        host.expert_router = SelectedRouting(host.expert_router, keep)
        host.experts = host.active_experts = len(keep)
    else:
        host.router = SelectedRouting(host.router, keep)


def _folded(layer: CondConv2d | CondLinear, alpha: Tensor) -> nn.Module:
    """The plain layer with kernel Σ_i α_i W_i (α: (n,) or per channel (n, out))."""
    a = alpha.to(layer.weight.dtype)
    if a.dim() == 1:
        weight = torch.einsum("n,no...->o...", a, layer.weight.detach())
        bias = None if layer.bias is None else a @ layer.bias.detach()
    else:
        weight = torch.einsum("no,no...->o...", a, layer.weight.detach())
        bias = None if layer.bias is None else (a * layer.bias.detach()).sum(0)
    if isinstance(layer, CondLinear):
        plain: nn.Module = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None)
    else:
        plain = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias=bias is not None,
        )
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    return plain


def _fold(model: nn.Module, name: str, host: nn.Module, alpha: Tensor) -> None:
    routing, layers = expert_group(host)  # type: ignore[misc]
    experts = _layer(host, layers[0]).num_experts
    if alpha.shape[0] != experts:
        raise EditError(f"fold {name!r}: alpha has {alpha.shape[0]} experts, the layer has {experts}")
    if routing is None:
        _set_submodule(model, name, _folded(host, alpha))
        return
    for layer_name in layers:
        _set_submodule(host, layer_name, _folded(_layer(host, layer_name), alpha))
    if isinstance(host, TopKBottleneck):
        host.expert_router, host.experts, host.active_experts = None, 1, 1
    else:
        host.router = None


# --- top-k paths --------------------------------------------------------------------------------------


def _keep_paths(block: TopKBottleneck, keep: list[int]) -> None:
    """Slice the path weights of ``block`` to ``keep`` in place and restrict its gate to them."""
    d = block.width
    rows = torch.tensor([c * d + i for c in keep for i in range(d)])
    lead = () if block.expert_router is None else (slice(None),)
    with torch.no_grad():
        for name in ("reduce", "conv"):
            conv = getattr(block, name)
            conv.weight = nn.Parameter(conv.weight.detach()[(*lead, rows)].clone())
        expand = block.expand
        expand.weight = nn.Parameter(expand.weight.detach()[(*lead, slice(None), rows)].clone())
        for name in ("bn_reduce", "bn_conv"):
            setattr(block, name, slice_bn(getattr(block, name), rows))
    c = len(keep)
    block.conv.groups = c
    for conv in (block.reduce, block.conv, block.expand):  # keep the recorded shapes true
        if isinstance(conv, nn.Conv2d):
            conv.in_channels = conv.weight.shape[1] * conv.groups
            conv.out_channels = conv.weight.shape[0]
        else:
            conv.in_channels = conv.weight.shape[2] * conv.groups
            conv.out_channels = conv.weight.shape[1]
    gate = block.gate
    position = {p: i for i, p in enumerate(keep)}
    gate.tiebreak = torch.tensor([position[p] for p in gate.tiebreak.tolist() if p in position])
    gate.routing = SelectedRouting(gate.routing, keep)
    gate.num_paths = c
    block.cardinality = c
    block.k = gate.k = min(gate.k, c)


# --- inner channels of a BranchModule --------------------------------------------------------------


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


# --- applying ------------------------------------------------------------------------------------------


def apply_edit(model: nn.Module, edit: Edit | dict[str, Any]) -> None:
    """Apply one edit (or a stored record of one) to ``model`` in place; kept weights are copied over."""
    if not isinstance(edit, Edit):
        edit = Edit.parse(edit)
    op, name, args = edit.op, edit.module, edit.args
    if op == "branches":
        module = _get(model, name, (GateConnectModule,))
        keep = _indices(args.get("keep"), module.cardinality, f"branches {name!r} keep")
        sources = args.get("sources")
        num_inputs = args.get("num_inputs")
        if not isinstance(sources, list) or len(sources) != len(keep) or not isinstance(num_inputs, int):
            raise EditError(f"branches {name!r}: expected one source list per kept branch and num_inputs")
        try:
            new = BranchModule.from_module(module, keep, sources, num_inputs)
        except ValueError as err:
            raise EditError(f"branches {name!r}: {err}") from None
        _set_submodule(model, name, new)
    elif op == "paths":
        block = _get(model, name, (TopKBottleneck,))
        _keep_paths(block, _indices(args.get("keep"), block.cardinality, f"paths {name!r} keep"))
    elif op == "experts":
        host = _get(model, name, (TopKBottleneck, CondNetBlock, CondConv2d, CondLinear))
        if expert_group(host) is None:
            raise EditError(f"experts {name!r}: the module has no CondConv experts")
        n = _layer(host, expert_group(host)[1][0]).num_experts
        _keep_experts(host, _indices(args.get("keep"), n, f"experts {name!r} keep"))
    elif op == "channels":
        block = _get(model, name, (BranchModule,))
        layer = args.get("layer")
        if layer not in LAYERS:
            raise EditError(f"channels {name!r}: layer must be one of {LAYERS}, got {layer!r}")
        keep = _indices(args.get("keep"), getattr(block, layer).out_channels, f"channels {name!r} keep")
        try:
            prune_inner(block, layer, keep)
        except ValueError as err:
            raise EditError(f"channels {name!r}: {err}") from None
    else:
        host = _get(model, name, (TopKBottleneck, CondNetBlock, CondConv2d, CondLinear))
        if expert_group(host) is None:
            raise EditError(f"fold {name!r}: the module has no CondConv experts")
        try:
            alpha = torch.tensor(args.get("alpha"), dtype=torch.float64)
        except (TypeError, ValueError):
            raise EditError(f"fold {name!r}: alpha must be a list of numbers") from None
        _fold(model, name, host, alpha)


def apply_edits(model: nn.Module, edits: Sequence[Edit | dict[str, Any]]) -> nn.Module:
    """Apply ``edits`` in order (records are parsed first); returns ``model``."""
    if not isinstance(edits, list | tuple):
        raise EditError(f"edits must be a list, got {type(edits).__name__}")
    for edit in edits:
        apply_edit(model, edit)
    return model
