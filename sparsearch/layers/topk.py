"""Top-k multi-path ResNeXt bottleneck (seed 000, §2 and Fig. 1).

C paths of width d: 1×1 reduce (in -> d) -> BN -> ReLU -> 3×3 (d -> d, stride) -> BN -> ReLU ->
1×1 expand (d -> out). A gate controller picks k paths per example; the block returns

    ReLU(BN(Σ_{c in top-k} g_c · expand_c(path_c(x))) + shortcut(x))

The expand BN, the shortcut and the controller are the fixed part; the paths are the conditional part.

With ``experts = n > 1`` the three path convolutions are CondConv (seed 001): each holds n kernels,
mixed per example by routing weights computed once per block from the block input (global average
pool -> sigmoid routing, shared by the three convolutions as in CC-MobileNetV2).

Two executions of the same parameters (``execution``):

- ``"masked"``: every path runs on every example; unselected paths are zeroed (the reference).
- ``"sparse"``: for each example only its k paths run. The chosen rows of the reduce and expand
  weights are gathered per example and applied with ``bmm``; the 3×3 runs as one grouped convolution
  with the batch folded into the groups (B·k groups). Measured on 2 CPU cores this beat dispatching
  examples path by path, whose many small convolutions cost more than the dense block.

In training, a path's batch norm takes its statistics over the examples that selected it, in both
executions, so the two agree in train mode as well as in eval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.layers._checks import check_positive
from sparsearch.layers.balance import cv_squared
from sparsearch.layers.batch_sync import global_sum, syncing
from sparsearch.layers.condconv import CondConv2d
from sparsearch.layers.controllers import Gates, ImageGate, QuestionGate
from sparsearch.layers.routing import create_routing

__all__ = ["EXECUTIONS", "TopKBottleneck", "expert_weights", "shifted_conv3x3"]

EXECUTIONS = ("sparse", "masked")


def _path_batch_norm(h: Tensor, channel: Tensor, member: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    """Batch norm of path channels laid out per example.

    Args:
        h: (B, S, L) activations: S channel slots per example, L spatial positions.
        channel: (B, S) long, the BN channel each slot belongs to.
        member: (B, S) 1.0 where the slot's path ran for that example (counts in the statistics).
        bn: holds the affine parameters and running statistics of all C·d channels.

    Returns:
        (B, S, L) normalised activations; in training, running statistics are updated for channels
        with at least one member, as nn.BatchNorm2d does with ``momentum``.
    """
    flat = channel.reshape(-1)  # (B·S,)
    if bn.training:
        n_ch = bn.num_features
        length = h.shape[-1]
        dtype, h = h.dtype, h.float()  # statistics in float32 under autocast too
        member = member.float()
        wide = torch.float64 if syncing() else h.dtype  # a torchrun job adds partial sums: in float64
        count = h.new_zeros(n_ch, dtype=wide).index_add_(0, flat, member.reshape(-1).to(wide)) * length  # (C·d,)
        total = h.new_zeros(n_ch, dtype=wide).index_add_(0, flat, (h.sum(-1, dtype=wide) * member).reshape(-1))
        count, total = global_sum(torch.stack([count, total])).unbind()  # the global batch's, under torchrun
        mean = (total / count.clamp_min(1)).to(h.dtype)
        centred = h - mean[channel][..., None]  # (B, S, L)
        sq = (centred.square().sum(-1, dtype=wide) * member).reshape(-1)
        var = (global_sum(h.new_zeros(n_ch, dtype=wide).index_add_(0, flat, sq)) / count.clamp_min(1)).to(h.dtype)
        count = count.to(h.dtype)
        with torch.no_grad():
            seen = count > 0
            unbiased = var * count / (count - 1).clamp_min(1)
            bn.num_batches_tracked += 1
            # momentum=None means a cumulative average, as in nn.BatchNorm2d.
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean[seen] = (1 - m) * bn.running_mean[seen] + m * mean[seen]
            bn.running_var[seen] = (1 - m) * bn.running_var[seen] + m * unbiased[seen]
        scale = bn.weight / torch.sqrt(var + bn.eps)  # (C·d,)
        return (centred * scale[channel][..., None] + bn.bias[channel][..., None]).to(dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return h * scale[channel][..., None] + shift[channel][..., None]


def shifted_conv3x3(h: Tensor, w: Tensor, stride: int) -> Tensor:
    """A 3×3 convolution (padding 1) with its own kernel per item, as nine shifted batched products.

    Args:
        h: (N, d, H, W) inputs, one item per example and chosen path.
        w: (N, d, d, 3, 3) each item's kernel.

    Returns:
        (N, d, H'·W'): what the grouped convolution with the batch folded into the groups computes. The
        same multiply-adds in ops every runtime has (slices and ``bmm``; ONNX has no convolution whose
        group count follows the batch).
    """
    n, d, hi, wi = h.shape
    ho, wo = (hi - 1) // stride + 1, (wi - 1) // stride + 1
    padded = F.pad(h, (1, 1, 1, 1))
    out = None
    for dy in range(3):
        for dx in range(3):
            patch = padded[:, :, dy : dy + stride * (ho - 1) + 1 : stride, dx : dx + stride * (wo - 1) + 1 : stride]
            term = torch.bmm(w[:, :, :, dy, dx], patch.reshape(n, d, ho * wo))
            out = term if out is None else out + term
    return out


def expert_weights(router: nn.Module | None, x: Tensor, active: int, experts: int) -> Tensor | None:
    """(B, experts) CondConv routing weights of a block input, 0 past the ``active`` first experts; None for
    plain path convolutions (no router)."""
    if router is None:
        return None
    if active == experts:
        return router(x.mean(dim=(2, 3))).weights
    features = x.mean(dim=(2, 3))
    alpha = features.new_ones(x.shape[0], 1) if active == 1 else router.normalise(router.logits(features)[:, :active])
    return F.pad(alpha, (0, experts - active))


class TopKBottleneck(nn.Module):
    """ResNeXt bottleneck whose C paths run conditionally, k per example.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        cardinality: C, the number of paths.
        width: d, channels of each path.
        k: paths run per example, 1 <= k <= C.
        stride: stride of the 3×3 convolution and of the shortcut.
        routing: routing function of the controller (``"constant"`` with k = C is the plain block).
        cond_dim: width of the question vector; if set, the controller is question-conditioned and
            ``forward`` needs ``cond``.
        hidden: routing hidden layer size.
        execution: ``"sparse"`` or ``"masked"``; can be changed at any time.
        experts: CondConv experts per path convolution (1: plain convolutions).
        expert_routing: routing function of the CondConv experts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cardinality: int,
        width: int,
        k: int,
        stride: int = 1,
        routing: str = "softmax",
        *,
        cond_dim: int | None = None,
        hidden: str = "none",
        execution: str = "sparse",
        experts: int = 1,
        expert_routing: str = "sigmoid",
    ) -> None:
        super().__init__()
        check_positive(
            in_channels=in_channels,
            out_channels=out_channels,
            cardinality=cardinality,
            width=width,
            stride=stride,
            experts=experts,
        )
        if not 1 <= k <= cardinality:
            raise ValueError(f"k={k} must be in 1..{cardinality} (the cardinality)")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cardinality, self.width, self.k, self.stride = cardinality, width, k, stride
        self.experts = experts
        self.active_experts = experts  # a supernet runs the first n (set_experts)
        self.execution = execution
        inner = cardinality * width
        if experts == 1:
            self.reduce: nn.Module = nn.Conv2d(in_channels, inner, 1, bias=False)
            self.conv: nn.Module = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
            self.expand: nn.Module = nn.Conv2d(inner, out_channels, 1, bias=False)
            self.expert_router = None
        else:  # CondConv paths; their routing is computed once per block (expert_router)

            def cond(cin: int, cout: int, size: int, **kw: int) -> CondConv2d:
                return CondConv2d(
                    cin, cout, size, bias=False, num_experts=experts, routing="constant", execution="mixed", **kw
                )

            self.reduce = cond(in_channels, inner, 1)
            self.conv = cond(inner, inner, 3, stride=stride, padding=1, groups=cardinality)
            self.expand = cond(inner, out_channels, 1)
            self.expert_router = create_routing(expert_routing, in_channels, experts, hidden=hidden)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.bn_conv = nn.BatchNorm2d(inner)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()
        if cond_dim is None:
            self.gate: ImageGate | QuestionGate = ImageGate(in_channels, cardinality, k, routing, hidden=hidden)
        else:
            self.gate = QuestionGate(in_channels, cond_dim, cardinality, k, routing, hidden=hidden)
        self.portable = False  # sparse 3×3 as shifted batched products (export to ONNX; same arithmetic)
        self.balance_loss: Tensor | None = None  # CV² of the last batch's path importance
        self.last_gates: Gates | None = None  # selection of the last batch (usage statistics)

    def set_k(self, k: int) -> None:
        """Run ``k`` paths per example from now on (a weight-sharing supernet changes k per step)."""
        if not 1 <= k <= self.cardinality:
            raise ValueError(f"k={k} must be in 1..{self.cardinality} (the cardinality)")
        if self.gate.routing.name == "constant" and k < self.cardinality:
            raise ValueError(f"constant routing cannot rank paths; use k == {self.cardinality}, got {k=}")
        self.k = self.gate.k = self.gate.routing.k = k

    def set_experts(self, n: int) -> None:
        """Mix the first ``n`` experts of each path convolution from now on (a supernet's elastic expert
        count): their routing is the router's first n logits normalised, and ``n = 1`` runs the first
        expert's kernel alone, as a block built with one expert would. The unused experts get weight 0,
        so every form (masked, sparse, exported) computes Σ_{i<n} α_i W_i exactly."""
        if not 1 <= n <= self.experts:
            raise ValueError(f"experts={n} must be in 1..{self.experts} (the experts this block was built with)")
        self.active_experts = n

    def set_routing(self, name: str) -> None:
        """Rank paths with routing function ``name`` from now on, on the gate's one trunk (a supernet's
        routing heads share it); a routing function whose parameters differ from the trunk's is refused."""
        current = self.gate.routing
        if name == current.name:
            return
        new = create_routing(
            name, current.in_features, current.num_experts, channels=current.channels, hidden=current.hidden, k=self.k
        )
        if {n: p.shape for n, p in new.named_parameters()} != {n: p.shape for n, p in current.named_parameters()}:
            raise ValueError(f"routing {name!r} cannot share the gate trunk of routing {current.name!r}")
        if new.has_parameters:
            new.trunk = current.trunk
        self.gate.routing = new

    def expert_weights(self, x: Tensor) -> Tensor | None:
        """(B, experts) CondConv routing weights of the block input, 0 past the active count; None for
        plain path convolutions."""
        return expert_weights(self.expert_router, x, self.active_experts, self.experts)

    @property
    def execution(self) -> str:
        return self._execution

    @execution.setter
    def execution(self, value: str) -> None:
        if value not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {value!r}")
        self._execution = value

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        gates = self.gate(x, cond)
        self.last_gates = gates
        # Importance = summed gate values per path over the batch (seed 000, App. C).
        self.balance_loss = cv_squared(global_sum(gates.weights.float().sum(dim=0)))
        alpha = self.expert_weights(x)
        if self._execution == "masked" or (self.training and self.k == self.cardinality):
            return F.relu(self.bn_expand(self._masked_paths(x, gates, alpha)) + self.shortcut(x))
        return self._sparse_tail(x, *self._sparse_paths(x, gates, alpha))

    def _masked_paths(self, x: Tensor, gates: Gates, alpha: Tensor | None) -> Tensor:
        """All C paths on all examples; unselected paths weighted zero. Returns Σ g_c·expand_c."""
        b, d = x.shape[0], self.width
        channel = torch.arange(self.cardinality * d, device=x.device).expand(b, -1)  # (B, C·d)
        member = gates.mask.repeat_interleave(d, dim=1)  # (B, C·d)
        run = (lambda conv, t: conv(t)) if alpha is None else (lambda conv, t: conv(t, alpha))
        h = run(self.reduce, x)  # (B, C·d, H, W)
        h = F.relu(self._norm(h, channel, member, self.bn_reduce))
        h = run(self.conv, h)  # (B, C·d, H', W')
        h = F.relu(self._norm(h, channel, member, self.bn_conv))
        h = h * gates.weights.repeat_interleave(d, dim=1)[:, :, None, None]
        return run(self.expand, h)  # (B, out, H', W')

    def _norm(self, h: Tensor, channel: Tensor, member: Tensor, bn: nn.BatchNorm2d) -> Tensor:
        if self.k == self.cardinality:
            return bn(h)  # every path ran on every example: plain batch norm
        b, s, hh, ww = h.shape
        return _path_batch_norm(h.view(b, s, hh * ww), channel, member, bn).view(b, s, hh, ww)

    def _rows(self, weight: Tensor, channel: Tensor, alpha: Tensor | None) -> Tensor:
        """Each example's chosen rows of a path weight, mixed over experts when there are several.

        Args:
            weight: (C·d, ...) or, with experts, (n, C·d, ...).
            channel: (B, S) row indices per example.
            alpha: (B, n) expert routing weights, or None.

        Returns:
            (B, S, ...) per-example rows; gathering before mixing costs n·S·row MACs, not n·C·d·row.
        """
        if alpha is None:
            return weight[channel]
        rows = weight[:, channel]  # (n, B, S, ...)
        mixed = torch.einsum("bn,nbr->br", alpha, rows.flatten(2))  # (B, S·row)
        return mixed.view(rows.shape[1:])

    def _sparse_paths(self, x: Tensor, gates: Gates, alpha: Tensor | None) -> tuple[Tensor, Tensor]:
        """Only the k chosen paths of each example run, up to the expand.

        Returns the chosen paths' activations (B, k·d, H'·W') and their gate-scaled expand weights
        (B, out, k·d), so that ``Σ g_c·expand_c(path_c)`` is their batched product.
        """
        b, _, hi, wi = x.shape
        k, d, cin, cout = self.k, self.width, self.in_channels, self.out_channels
        # Global channel ids of each example's chosen paths: path c owns channels c·d .. c·d+d-1.
        channel = (gates.index[:, :, None] * d + torch.arange(d, device=x.device)).reshape(b, k * d)
        member = torch.ones_like(channel, dtype=x.dtype)  # (B, k·d) every slot ran
        lead = () if alpha is None else (self.experts,)  # path weights: ([n,] rows, ...)
        w_reduce = self._rows(self.reduce.weight.view(*lead, -1, cin), channel, alpha)  # (B, k·d, in)
        h = torch.bmm(w_reduce, x.reshape(b, cin, hi * wi))  # (B, k·d, H·W)
        h = F.relu(_path_batch_norm(h, channel, member, self.bn_reduce))
        w_conv = self._rows(self.conv.weight.view(*lead, -1, d, 3, 3), channel, alpha)  # (B, k·d, d, 3, 3)
        if self.portable:
            h = shifted_conv3x3(h.reshape(b * k, d, hi, wi), w_conv.reshape(b * k, d, d, 3, 3), self.stride)
            h = h.view(1, b * k * d, (hi - 1) // self.stride + 1, (wi - 1) // self.stride + 1)
        else:
            h = F.conv2d(
                h.reshape(1, b * k * d, hi, wi), w_conv.reshape(b * k * d, d, 3, 3), None, self.stride, 1, groups=b * k
            )
        ho, wo = h.shape[-2:]  # h: (1, B·k·d, H', W'), the batch folded into the groups
        h = F.relu(_path_batch_norm(h.view(b, k * d, ho * wo), channel, member, self.bn_conv))
        g = gates.weights.gather(1, gates.index).repeat_interleave(d, dim=1)  # (B, k·d)
        w_expand = self._rows(self.expand.weight.view(*lead, cout, -1).transpose(-1, -2), channel, alpha)
        # w_expand: (B, k·d, out) -> gate-scaled (B, out, k·d); h: (B, k·d, H'·W')
        return h, (w_expand * g[:, :, None]).transpose(1, 2)

    def _sparse_tail(self, x: Tensor, h: Tensor, w_expand: Tensor) -> Tensor:
        """ReLU(BN(w_expand @ h) + shortcut(x)) from the chosen paths' activations.

        In eval the expand BN is folded: its scale into the gathered weights, its shift into the
        residual, to which ``baddbmm`` adds the paths (in place under no_grad/inference_mode): two
        passes over the output for the whole epilogue instead of four, and no extra multiply-adds.
        """
        b, cout = x.shape[0], self.out_channels
        if self.training:
            residual = self.shortcut(x)
            paths = torch.bmm(w_expand, h).view_as(residual)
            return F.relu(self.bn_expand(paths) + residual)
        bn = self.bn_expand
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
        shift = bn.bias - bn.running_mean * scale  # (out,)
        if isinstance(self.shortcut, nn.Identity):
            residual = x + shift[:, None, None]  # (B, out, H, W), a fresh tensor
        else:
            conv, sbn = self.shortcut
            residual = F.batch_norm(
                conv(x), sbn.running_mean, sbn.running_var, sbn.weight, sbn.bias + shift, False, 0.0, sbn.eps
            )
        acc = residual.view(b, cout, -1)  # (B, out, H'·W')
        w = w_expand * scale[:, None]
        # Accumulating into the residual in place saves a pass; autograd needs the out-of-place form, and
        # so does a traced program (torch.export, ONNX), which is called with or without gradients.
        # Under autocast the residual may come in another dtype than the paths: out of place then too.
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or acc.dtype != h.dtype:
            out = torch.baddbmm(acc, w, h)
        else:
            out = torch.baddbmm(acc, w, h, out=acc)
        return out.relu_().view_as(residual)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, cardinality={self.cardinality}, "
            f"width={self.width}, k={self.k}, stride={self.stride}, experts={self.experts}, "
            f"execution={self._execution!r}"
        )
