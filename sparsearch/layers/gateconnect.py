"""GateConnect multi-branch module (seed 003, §2 and App. A).

A module holds C residual bottleneck branches (in -> w 1×1, w -> w 3×3, w -> out 1×1, BN, ReLU).
Branch j reads ``x_j = ReLU((1/K) Σ_k g_jk · y_k)`` from the previous module's branch outputs ``y_k``
and returns ``y_j = shortcut(x_j) + F_j(x_j)``; the shortcut is the identity, or one projection
shared by the branches where the channels or the resolution change. Exactly K (the fan-in) gates of
each row of ``g`` are on.

Seed 003 writes the input as the plain sum of eq. 2 and applies "a ReLU after each aggregation". Each
``y_k`` carries its own copy of the residual stream, so a plain sum of K of them carries K copies: the
activations grow K-fold per module (with identity shortcuts) and a network's output C-fold, and SGD
at the seed's learning rate diverges. Averaging the K inputs keeps one copy, and with the ReLU after
the aggregation the module at K = C computes ``ReLU(x + (1/C) Σ_j F_j(x))``: the ResNeXt block of the
seed's eq. 1, its last batch norm's affine scaled by 1/C (the seed's claim that K = C is ResNeXt, made
exact). A single input goes through the same ReLU: the identity on an activation (the stem, a
single-stream block), and the ReLU a lone pre-activation branch needs once ``sparsearch prune`` has
removed its siblings. Readers of a module's outputs (the next module, or the network where the stage
ends) aggregate them the same way.

Connectivity modes:

- ``"learned"``: real-valued gates g̃ in [0, 1]; at each training step each row is normalised to a
  multinomial and K distinct inputs are drawn from it; the forward pass uses the binary gates and the
  real-valued gates receive the straight-through gradient ∂ℓ/∂g_jk = ⟨∂ℓ/∂x_j, y_k⟩ (unselected gates
  included). Call :func:`clip_gates_` after each optimiser step; keep the gates out of weight decay
  (:func:`split_gate_parameters`). In eval, and after :meth:`GateConnectModule.freeze`, the top-K
  gates of each row are used.
- ``"fixed_full"``: every gate on (K = number of inputs): the ResNeXt aggregation.
- ``"fixed_random"``: K inputs per branch drawn once at construction, then fixed (seed 003's baseline).

Inputs and outputs are stacked branch tensors: (B, num_inputs, in, H, W) -> (B, C, out, H', W').
A network's first module reads the stem as a single input: pass ``x[:, None]`` with ``num_inputs=1``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.choices import CONNECTIVITIES
from sparsearch.layers._checks import check_positive
from sparsearch.layers.branches import BranchTrunk
from sparsearch.layers.controllers import select_top_k

__all__ = ["CONNECTIVITIES", "GateConnectModule", "clip_gates_", "split_gate_parameters"]


class GateConnectModule(BranchTrunk):
    """C residual branches with learned binary input connectivity of fan-in K.

    Args:
        in_channels: channels of each input branch.
        out_channels: channels of each branch output.
        cardinality: C, branches in this module.
        width: w, bottleneck width of each branch.
        fan_in: K, inputs summed by each branch, 1 <= K <= num_inputs.
        stride: stride of each branch's 3×3 convolution and shortcut.
        connectivity: ``"learned"``, ``"fixed_full"`` or ``"fixed_random"``.
        num_inputs: branches of the previous module (defaults to ``cardinality``; 1 after the stem).
        gate_floor: lower clip of the real-valued gates, so a row always has K drawable entries.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cardinality: int,
        width: int,
        fan_in: int,
        stride: int = 1,
        connectivity: str = "learned",
        *,
        num_inputs: int | None = None,
        gate_floor: float = 1e-3,
    ) -> None:
        num_inputs = cardinality if num_inputs is None else num_inputs
        check_positive(
            in_channels=in_channels,
            out_channels=out_channels,
            cardinality=cardinality,
            width=width,
            stride=stride,
            num_inputs=num_inputs,
        )
        if connectivity not in CONNECTIVITIES:
            raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}")
        if connectivity == "fixed_full":
            fan_in = num_inputs
        if not 1 <= fan_in <= num_inputs:
            raise ValueError(f"fan_in={fan_in} must be in 1..{num_inputs} (the inputs of each branch)")
        if not 0 < gate_floor < 1 / num_inputs:
            raise ValueError(f"gate_floor must be in (0, 1/{num_inputs}), got {gate_floor=}")
        super().__init__(in_channels, out_channels, cardinality, width, stride)  # the C branches
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cardinality, self.width, self.fan_in, self.stride = cardinality, width, fan_in, stride
        self.num_inputs, self.connectivity, self.gate_floor = num_inputs, connectivity, gate_floor
        c = cardinality
        # Real-valued gates g̃ (learned mode); uniform start, so early draws explore every input.
        self.gates = nn.Parameter(torch.full((c, num_inputs), 0.5), requires_grad=connectivity == "learned")
        self.register_buffer("mask", self._initial_mask())  # binary connectivity when fixed or frozen
        self.register_buffer("tiebreak", torch.randperm(num_inputs))
        # Saved with the weights (a state dict restores a frozen connectivity as frozen).
        self.register_buffer("frozen_flag", torch.tensor(connectivity != "learned"))

    @property
    def frozen(self) -> bool:
        """True once the connectivity is fixed: ``mask`` is used and the gates no longer learn."""
        return bool(self.frozen_flag)

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self.frozen_flag.fill_(bool(value))

    def set_fan_in(self, fan_in: int) -> None:
        """Use K = ``fan_in`` inputs per branch from now on (a weight-sharing supernet changes K per step);
        only while the connectivity is still learned."""
        if not 1 <= fan_in <= self.num_inputs:
            raise ValueError(f"fan_in={fan_in} must be in 1..{self.num_inputs} (the inputs)")
        if self.frozen and fan_in != self.fan_in:
            raise ValueError("the connectivity is frozen; its fan-in can no longer change")
        self.fan_in = fan_in

    def _initial_mask(self) -> Tensor:
        c, n = self.cardinality, self.num_inputs
        if self.connectivity == "fixed_random":
            picks = torch.stack([torch.randperm(n)[: self.fan_in] for _ in range(c)])  # (C, K)
            return torch.zeros(c, n).scatter_(1, picks, 1.0)
        return torch.ones(c, n)

    def freeze(self) -> None:
        """Fix the connectivity to the top-K real-valued gates of each branch (seed 003, App. E phase 2)."""
        if self.connectivity == "learned":
            self.mask.copy_(self._top_k_mask())
            self.gates.requires_grad_(False)
        self.frozen = True

    def _top_k_mask(self) -> Tensor:
        index = select_top_k(self.gates.detach(), self.fan_in, self.tiebreak)  # (C, K)
        return torch.zeros_like(self.mask).scatter_(1, index, 1.0)

    def connectivity_matrix(self) -> Tensor:
        """(C, num_inputs) bool: the connections used at inference now."""
        return (self.mask if self.frozen else self._top_k_mask()).bool()

    def active_connections(self) -> list[tuple[int, int]]:
        """(branch j, input k) pairs of :meth:`connectivity_matrix`, for the connectivity graph."""
        return [(int(j), int(k)) for j, k in self.connectivity_matrix().nonzero().tolist()]

    def _step_gates(self) -> Tensor:
        """Binary (C, num_inputs) gates for this forward pass; straight-through when learning."""
        if self.frozen:
            return self.mask
        if not self.training:
            return self._top_k_mask()
        g = self.gates
        probs = g.detach().clamp(self.gate_floor, 1.0)
        probs = probs / probs.sum(dim=1, keepdim=True)  # each row a multinomial over the inputs
        picks = torch.multinomial(probs, self.fan_in, replacement=False)  # (C, K) distinct
        binary = torch.zeros_like(probs).scatter_(1, picks, 1.0)
        return binary + (g - g.detach())  # value: binary; gradient: to every real-valued gate

    def forward(self, inputs: Tensor) -> Tensor:
        if inputs.dim() != 5 or inputs.shape[1:3] != (self.num_inputs, self.in_channels):
            raise ValueError(
                f"expected input of shape (B, {self.num_inputs}, {self.in_channels}, H, W), got {tuple(inputs.shape)}"
            )
        b = inputs.shape[0]
        if self.num_inputs == 1:  # one input, every gate on: each branch reads it (ReLU: as any aggregate)
            x = F.relu(inputs).expand(b, self.cardinality, *inputs.shape[2:])  # (B, C, in, H, W)
        else:  # the mean of the K selected inputs, then the ReLU after the aggregation
            gates = self._step_gates() / self.fan_in
            x = F.relu(torch.einsum("jk,bkchw->bjchw", gates, inputs))  # (B, C, in, H, W)
        return self.run_branches(x)  # (B, C, out, H', W'): pre-activation; the reader aggregates, then ReLU

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, cardinality={self.cardinality}, "
            f"width={self.width}, fan_in={self.fan_in}, num_inputs={self.num_inputs}, "
            f"connectivity={self.connectivity!r}, frozen={self.frozen}"
        )


def _gate_modules(model: nn.Module) -> Iterator[GateConnectModule]:
    return (m for m in model.modules() if isinstance(m, GateConnectModule))


def split_gate_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, gates): the model's parameters with the real-valued gates apart.

    The gates take their own learning rate and no weight decay (seed 003, App. E).
    """
    gate_ids = {id(m.gates) for m in _gate_modules(model)}
    params = list(model.parameters())
    return [p for p in params if id(p) not in gate_ids], [p for p in params if id(p) in gate_ids]


@torch.no_grad()
def clip_gates_(model: nn.Module) -> None:
    """Clip every real-valued gate to [gate_floor, 1] (seed 003, Algorithm 1, step 3)."""
    for m in _gate_modules(model):
        m.gates.clamp_(m.gate_floor, 1.0)
