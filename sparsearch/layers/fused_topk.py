"""The inference form of a top-k block: its batch norms folded into the path and shortcut weights, bias,
residual and ReLU fused into the products that make them, the chosen paths gathered whole.

``FusedTopKBottleneck.from_block(block)`` reads an eval-mode :class:`~sparsearch.layers.TopKBottleneck`
and computes what it computes, in fewer passes over the activations:

- each batch norm becomes a scale on its convolution's output rows and a bias (running statistics);
- the reduce and the 3×3 add their bias inside the product (``baddbmm``, the convolution's bias) and
  take their ReLU in place; the expand's shift joins the residual (the projection's bias, or one add to an
  identity shortcut), the paths are accumulated into the residual inside the expand product, then one
  in-place ReLU: three passes over the output for the epilogue (six in the training form's eval);
- the path weights are stored path-major, ``(C, d, ...)``, so an example's k paths are k contiguous
  slabs: one gather of whole paths per weight instead of a gather of k·d rows and, for the batch norms,
  of their per-channel statistics;
- where every path runs (k = C, or the masked execution) with plain kernels, the block is the dense
  ResNeXt block: three convolutions, the grouped one with C groups, nothing gathered.

Strategies for the chosen paths (``strategy``):

- ``"gather"``: per example, its k paths' weights gathered and applied with batched products; the 3×3
  as one convolution with the batch folded into the groups (B·k groups). At batch 1 that is one dense
  convolution of k groups. The CPU's form.
- ``"grouped"``: the batch's (example, path) pairs grouped by path, padded to the fullest path, and each
  of the three products run for all paths at once (one batched product per 1×1, one grouped 3×3 with C
  groups, a batch of the fullest path's count): the mixture-of-experts layout for GPUs, where a few large
  products keep the tensor cores busy and per-example gathers do not. Plain kernels only (CondConv
  experts make every example's kernel its own; they take the gather form).

The module is for inference: it holds no trainable parameters of its own and refuses training mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.layers.topk import expert_weights, shifted_conv3x3

__all__ = ["STRATEGIES", "FusedTopKBottleneck", "fold_batch_norm"]

STRATEGIES = ("gather", "grouped")


def fold_batch_norm(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(scale, shift) of an eval-mode batch norm: ``bn(y) == y * scale + shift`` per channel (a norm without
    affine parameters scales by 1 and shifts by 0 before its statistics)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    return scale, shift if bn.bias is None else shift + bn.bias


class FusedTopKBottleneck(nn.Module):
    """A :class:`~sparsearch.layers.TopKBottleneck` folded for inference (see the module docstring).

    Build with :meth:`from_block`; ``forward(x, cond=None)`` as the block's. ``strategy`` and ``portable``
    (the 3×3 as shifted batched products, for ONNX) can be changed at any time.
    """

    def __init__(self) -> None:  # from_block fills it
        super().__init__()
        self.strategy = "gather"
        self.portable = False
        self.last_gates = None

    @classmethod
    def from_block(cls, block: nn.Module, strategy: str = "gather") -> FusedTopKBottleneck:
        """The inference form of ``block`` (a TopKBottleneck); its gate and expert router are shared, its
        folded weights are new tensors of the block's dtype and device."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        fused = cls()
        fused.strategy = strategy
        c, d, cin, cout = block.cardinality, block.width, block.in_channels, block.out_channels
        fused.cardinality, fused.width, fused.in_channels, fused.out_channels = c, d, cin, cout
        fused.k, fused.stride, fused.experts = block.k, block.stride, block.experts
        fused.active_experts = block.active_experts
        fused.dense = block.execution == "masked" or block.k == c  # every path runs
        fused.gate, fused.expert_router = block.gate, block.expert_router
        fused.uniform = block.gate.routing.name == "constant"  # every gate value is one
        fused.portable = block.portable
        lead = () if block.experts == 1 else (block.experts,)
        with torch.no_grad():
            s_r, b_r = fold_batch_norm(block.bn_reduce)
            s_c, b_c = fold_batch_norm(block.bn_conv)
            s_e, b_e = fold_batch_norm(block.bn_expand)
            reduce = block.reduce.weight.reshape(*lead, c, d, cin) * s_r.view(c, d, 1)
            conv = block.conv.weight.reshape(*lead, c, d, d, 3, 3) * s_c.view(c, d, 1, 1, 1)
            expand = block.expand.weight.reshape(*lead, cout, c, d).movedim(-3, -1) * s_e  # (.., C, d, out)
            fused.register_buffer("w_reduce", reduce.contiguous())  # ([n,] C, d, in)
            fused.register_buffer("b_reduce", b_r.view(c, d).clone())
            fused.register_buffer("w_conv", conv.contiguous())  # ([n,] C, d, d, 3, 3)
            fused.register_buffer("b_conv", b_c.view(c, d).clone())
            fused.register_buffer("w_expand", expand.contiguous())  # ([n,] C, d, out)
            if isinstance(block.shortcut, nn.Identity):
                fused.register_buffer("w_shortcut", None)
                fused.register_buffer("b_residual", b_e.clone())  # the expand's shift, added to x
            else:
                s_s, b_s = fold_batch_norm(block.shortcut[1])
                fused.register_buffer("w_shortcut", block.shortcut[0].weight * s_s.view(-1, 1, 1, 1))
                fused.register_buffer("b_residual", b_s + b_e)
        return fused

    def train(self, mode: bool = True) -> FusedTopKBottleneck:
        if mode:
            raise RuntimeError("a fused top-k block is for inference; train the network it was folded from")
        return super().train(False)

    def expert_weights(self, x: Tensor) -> Tensor | None:
        """(B, experts) CondConv routing weights, as the source block computes them; None without experts."""
        return expert_weights(self.expert_router, x, self.active_experts, self.experts)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        gates = self.gate(x, cond)
        self.last_gates = gates
        alpha = self.expert_weights(x)
        if alpha is None and self.dense:
            h, w = self._dense(x, gates)
        elif alpha is None and self.strategy == "grouped" and not self.portable:
            return self._grouped(x, gates, self._residual(x)).view(x.shape[0], self.out_channels, *self._grid(x))
        else:
            h, w = self._gathered(x, gates, alpha)
        return self._expand(x, w, h).view(x.shape[0], self.out_channels, *self._grid(x))

    def _grid(self, x: Tensor) -> tuple[int, int]:
        return (x.shape[2] - 1) // self.stride + 1, (x.shape[3] - 1) // self.stride + 1

    def _residual(self, x: Tensor) -> Tensor:
        """(B, out, H'·W') the shortcut with the expand's shift added, a fresh tensor."""
        if self.w_shortcut is None:
            return (x + self.b_residual[:, None, None]).view(x.shape[0], self.out_channels, -1)
        return F.conv2d(x, self.w_shortcut, self.b_residual, self.stride).view(x.shape[0], self.out_channels, -1)

    def _expand(self, x: Tensor, w: Tensor, h: Tensor) -> Tensor:
        """ReLU(shortcut(x) + shift + w @ h) for the paths' activations ``h`` (B, S, H'·W') and their
        gate-scaled expand weights ``w`` (B, out, S): the paths are added into the residual inside the
        product (in place where nothing traces or differentiates it), then one ReLU pass."""
        acc = self._residual(x)
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or acc.dtype != h.dtype:
            return torch.baddbmm(acc, w, h).relu_()
        return torch.baddbmm(acc, w, h, out=acc).relu_()

    def _dense(self, x: Tensor, gates) -> tuple[Tensor, Tensor]:
        """Every path on every example, as the plain ResNeXt block with folded norms: the paths' activations
        (B, C·d, H'·W') and the expand weights (B, out, C·d)."""
        b, c, d = x.shape[0], self.cardinality, self.width
        h = F.conv2d(x, self.w_reduce.view(c * d, -1, 1, 1), self.b_reduce.view(-1)).relu_()
        h = F.conv2d(h, self.w_conv.view(c * d, d, 3, 3), self.b_conv.view(-1), self.stride, 1, groups=c).relu_()
        h = h.view(b, c * d, -1)
        if not self.uniform:  # gate values (zero outside the chosen paths in the masked execution)
            h = h * gates.weights.repeat_interleave(d, dim=1)[:, :, None]
        w = self.w_expand.view(c * d, -1).t()  # (out, C·d)
        return h, w.expand(b, *w.shape)

    def _gathered(self, x: Tensor, gates, alpha: Tensor | None) -> tuple[Tensor, Tensor]:
        """Each example's k paths: their weights gathered whole (k slabs of d rows) and applied with batched
        products, the 3×3 with the batch folded into the groups; returns the paths' activations
        (B, k·d, H'·W') and their gate-scaled expand weights (B, out, k·d)."""
        b, _, hi, wi = x.shape
        k, d, cin = gates.index.shape[1], self.width, self.in_channels
        index = gates.index  # (B, k)

        def take(weight: Tensor) -> Tensor:  # (B, k, ...) each example's paths, mixed over experts
            if alpha is None:
                return weight[index]
            rows = weight[:, index]  # (n, B, k, ...)
            return torch.einsum("bn,nbr->br", alpha, rows.flatten(2)).view(rows.shape[1:])

        bias = self.b_reduce[index].view(b, k * d, 1)
        h = torch.baddbmm(bias, take(self.w_reduce).view(b, k * d, cin), x.reshape(b, cin, hi * wi)).relu_()
        w_conv = take(self.w_conv).view(b * k, d, d, 3, 3)
        b_conv = self.b_conv[index].view(b * k, d)
        if self.portable:
            h = shifted_conv3x3(h.view(b * k, d, hi, wi), w_conv, self.stride) + b_conv[:, :, None]
        else:
            h = F.conv2d(
                h.view(1, b * k * d, hi, wi), w_conv.view(-1, d, 3, 3), b_conv.view(-1), self.stride, 1, groups=b * k
            )
        h = h.relu_().view(b, k * d, -1)  # (B, k·d, H'·W')
        g = gates.weights.gather(1, index)  # (B, k) the chosen paths' gate values
        w_expand = (take(self.w_expand) * g[:, :, None, None]).view(b, k * d, -1)  # (B, k·d, out)
        return h, w_expand.transpose(1, 2)

    def _grouped(self, x: Tensor, gates, acc: Tensor) -> Tensor:
        """The batch's (example, path) pairs grouped by path (see the module docstring)."""
        b, cin, hi, wi = x.shape
        c, d, k = self.cardinality, self.width, gates.index.shape[1]
        path = gates.index.reshape(-1)  # (P,) the path of each pair, P = B·k, pair p = example p // k
        order = torch.argsort(path, stable=True)
        counts = torch.bincount(path, minlength=c)
        cap = int(counts.max())  # the fullest path's examples: every path padded to it
        first = torch.cumsum(counts, 0) - counts
        place = torch.empty_like(path)
        place[order] = torch.arange(path.numel(), device=x.device) - first[path[order]]  # rank within its path
        example = torch.arange(b, device=x.device).repeat_interleave(k)  # (P,)
        grid = x.new_zeros(c, cin, cap, hi * wi)
        grid[path, :, place] = x.reshape(b, cin, -1)[example]  # (C, in, cap, H·W)
        h = torch.baddbmm(self.b_reduce[:, :, None], self.w_reduce, grid.view(c, cin, -1)).relu_()  # (C, d, cap·H·W)
        h = h.view(c, d, cap, hi, wi).permute(2, 0, 1, 3, 4).reshape(cap, c * d, hi, wi)
        h = F.conv2d(h, self.w_conv.view(c * d, d, 3, 3), self.b_conv.view(-1), self.stride, 1, groups=c).relu_()
        ho, wo = h.shape[-2:]
        h = h.view(cap, c, d, ho * wo).permute(1, 2, 0, 3).reshape(c, d, cap * ho * wo)
        y = torch.bmm(self.w_expand.transpose(1, 2), h).view(c, -1, cap, ho * wo)  # (C, out, cap, H'·W')
        g = gates.weights.gather(1, gates.index).reshape(-1)  # (P,)
        pairs = y[path, :, place] * g[:, None, None].to(y.dtype)  # (P, out, H'·W')
        return acc.index_add(0, example, pairs).relu_()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, cardinality={self.cardinality}, width={self.width}, "
            f"k={self.k}, stride={self.stride}, experts={self.experts}, dense={self.dense}, "
            f"strategy={self.strategy!r}"
        )
