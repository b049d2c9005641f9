"""CondConv (seed 001): per-example kernels mixed from n experts, ``(Σ_i α_i W_i) * x``.

Two executions of the same parameters, equal up to float rounding (seed 001, Fig. 1):

- ``"experts"``: the mixture-of-experts form ``Σ_i α_i (W_i * x)``, one convolution with n·out
  output channels followed by the weighted sum; efficient for large batches (what the seed trains with).
- ``"mixed"``: one mixed kernel per example, then one convolution with the batch folded into the
  groups (``bmm`` for pointwise kernels); costs n·|W| multiply-adds per example to mix, then one conv.
- ``"auto"`` (default): the form measured faster for the batch size at hand; see :func:`pick_form`.
  Cost counts (``sparsearch.cost``) assume the mixed form, which is what ``auto`` runs at batch 1 and
  for spatial outputs; the experts form of a linear layer does n·|W| multiply-adds instead of (n+1)·|W|.

Routing (seed 001, §3): global average pool of the input -> a registered routing function
(sigmoid by default); ``route(x)`` returns (B, n) weights, or (B, n, out) with ``per_channel=True``.
``forward(x, routing_weights=...)`` accepts weights computed elsewhere, so layers of one block can
share a routing function (CC-MobileNetV2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from sparsearch.layers.routing import create_routing

__all__ = ["FORMS", "CondConv2d", "CondLinear", "pick_form"]

FORMS = ("auto", "experts", "mixed")


def pick_form(batch: int, experts: int, kernel_size: int, conv_macs: int) -> str:
    """Choose the faster execution for one batch from multiply-accumulate counts per example.

    Args:
        batch: examples in the batch.
        experts: n.
        kernel_size: parameters of one expert's kernel, |W|.
        conv_macs: multiply-accumulates of one expert's convolution on one example.

    The mixed form costs n·|W| (mixing) + conv_macs per example, the experts form n·conv_macs. A
    batch-folded convolution runs slower per MAC than a batched one, so the mixed form is chosen when
    it does at most half the work, or for a single example. Measured on 2 CPU cores (n = 8) this picks
    the mixed form for convolutions (spatial size > 1), where it was 1.3-27x faster at batch 1-32, and
    the experts form for linear layers at batch > 1, where it was 1.1-11x faster;
    ``benchmarks/bench_layers.py`` measures both forms side by side.
    """
    if batch == 1:
        return "mixed"
    return "mixed" if 2 * (experts * kernel_size + conv_macs) <= experts * conv_macs else "experts"


def _init_experts(weight: Tensor, bias: Tensor | None) -> None:
    """nn.Conv2d/nn.Linear initialisation applied to each expert with its own fan-in."""
    for i in range(weight.shape[0]):
        nn.init.kaiming_uniform_(weight[i], a=math.sqrt(5))
    if bias is not None:
        fan_in = math.prod(weight.shape[2:])  # in/groups · kh · kw of one expert
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound)


def _check_form(execution: str) -> str:
    if execution not in FORMS:
        raise ValueError(f"execution must be one of {FORMS}, got {execution!r}")
    return execution


def _check_routing_weights(alpha: Tensor, batch: int, experts: int, channels: int) -> None:
    if alpha.shape not in ((batch, experts), (batch, experts, channels)):
        raise ValueError(
            f"routing weights must have shape ({batch}, {experts}) or ({batch}, {experts}, {channels}),"
            f" got {tuple(alpha.shape)}"
        )


class CondConv2d(nn.Module):
    """Conditionally parameterised convolution; arguments mirror :class:`torch.nn.Conv2d`.

    Args:
        num_experts: n, kernels mixed per example.
        routing: a registered routing function name (``"constant"`` gives α = 1).
        per_channel: one routing weight per expert and output channel.
        hidden: routing hidden layer size.
        routing_k: experts kept by selecting routing functions (noisy top-k).
        execution: ``"auto"``, ``"experts"`` or ``"mixed"``; can be changed at any time.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        num_experts: int = 8,
        routing: str = "sigmoid",
        *,
        per_channel: bool = False,
        hidden: str = "none",
        routing_k: int | None = None,
        execution: str = "auto",
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts=}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels and out_channels must be divisible by groups, got "
                f"{in_channels=}, {out_channels=}, {groups=}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.groups, self.num_experts = groups, num_experts
        self.execution = _check_form(execution)
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(num_experts, out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(num_experts, out_channels)) if bias else None
        _init_experts(self.weight, self.bias)
        self.router = create_routing(
            routing,
            in_channels,
            num_experts,
            channels=out_channels if per_channel else None,
            hidden=hidden,
            k=routing_k,
        )

    def route(self, x: Tensor) -> Tensor:
        """Routing weights from the input's global average pool: (B, n) or (B, n, out)."""
        return self.router(x.mean(dim=(2, 3))).weights

    def forward(self, x: Tensor, routing_weights: Tensor | None = None) -> Tensor:
        alpha = self.route(x) if routing_weights is None else routing_weights
        _check_routing_weights(alpha, x.shape[0], self.num_experts, self.out_channels)
        form = self.execution
        if form == "auto":
            form = pick_form(x.shape[0], self.num_experts, self._kernel_numel, self._conv_macs(x))
        return self._mixed(x, alpha) if form == "mixed" else self._experts(x, alpha)

    @property
    def _kernel_numel(self) -> int:
        """|W|, parameters of one expert's kernel."""
        _, out, in_g, kh, kw = self.weight.shape
        return out * in_g * kh * kw

    def _conv_macs(self, x: Tensor) -> int:
        """Multiply-accumulates of one expert's convolution for one example of x."""
        (ph, pw), (dh, dw), (kh, kw), (sh, sw) = self.padding, self.dilation, self.kernel_size, self.stride
        h = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return self._kernel_numel * h * w

    def _experts(self, x: Tensor, alpha: Tensor) -> Tensor:
        """Σ_i α_i (W_i * x) as one convolution with n·out channels."""
        n, out, g = self.num_experts, self.out_channels, self.groups
        # Arrange kernels group-major so each conv group yields all n experts' outputs of that group.
        w = self.weight.view(n, g, out // g, *self.weight.shape[2:]).transpose(0, 1)  # (g, n, out/g, ...)
        w = w.reshape(g * n * (out // g), *self.weight.shape[2:])
        y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation, g)  # (B, g·n·out/g, H', W')
        b, _, ho, wo = y.shape
        if alpha.dim() == 2:  # one weight per expert: a (B·g, 1, n) @ (B·g, n, out/g·H'·W') product
            a = alpha[:, None, None, :].expand(b, g, 1, n).reshape(b * g, 1, n)
            y = torch.bmm(a, y.view(b * g, n, -1)).view(b, out, ho, wo)
        else:  # per channel: weight each expert's channels, then sum over experts
            a = alpha.view(b, n, g, out // g).transpose(1, 2)  # (B, g, n, out/g)
            y = y.view(b, g, n, out // g, ho, wo)  # (B, g, n, out/g, H', W')
            y = (y * a[..., None, None]).sum(dim=2).reshape(b, out, ho, wo)
        if self.bias is not None:
            y = y + self._mixed_bias(alpha)[:, :, None, None]
        return y

    def _mixed(self, x: Tensor, alpha: Tensor) -> Tensor:
        """(Σ_i α_i W_i) * x: one kernel per example, the batch folded into the groups."""
        b = x.shape[0]
        kernel = self.weight.shape[1:]  # (out, in/g, kh, kw)
        if alpha.dim() == 2:
            w = (alpha @ self.weight.view(self.num_experts, -1)).view(b, *kernel)  # (B, out, in/g, kh, kw)
        else:
            w = torch.einsum("bno,noikl->boikl", alpha, self.weight)  # (B, out, in/g, kh, kw)
        bias = None if self.bias is None else self._mixed_bias(alpha)  # (B, out)
        pointwise = kernel[2:] == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)
        if pointwise and self.groups == 1:
            hi, wi = x.shape[2:]
            w, x = w.view(b, self.out_channels, -1), x.reshape(b, self.in_channels, hi * wi)
            y = torch.bmm(w, x) if bias is None else torch.baddbmm(bias[:, :, None], w, x)
            return y.view(b, self.out_channels, hi, wi)
        flat_bias = None if bias is None else bias.reshape(-1)  # (B·out,) one bias per folded group
        y = F.conv2d(
            x.reshape(1, -1, *x.shape[2:]),
            w.reshape(-1, *kernel[1:]),
            flat_bias,
            self.stride,
            self.padding,
            self.dilation,
            b * self.groups,
        )
        return y.view(b, self.out_channels, *y.shape[2:])  # from (1, B·out, H', W')

    def _mixed_bias(self, alpha: Tensor) -> Tensor:
        """(B, out) per-example bias Σ_i α_i b_i."""
        assert self.bias is not None
        if alpha.dim() == 2:
            return alpha @ self.bias
        return (alpha * self.bias).sum(dim=1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
            f"num_experts={self.num_experts}, execution={self.execution!r}"
        )


class CondLinear(nn.Module):
    """Conditionally parameterised linear layer: ``(Σ_i α_i W_i) x + Σ_i α_i b_i``, routed from x itself.

    Args mirror :class:`torch.nn.Linear`, plus those of :class:`CondConv2d`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        num_experts: int = 8,
        routing: str = "sigmoid",
        *,
        per_channel: bool = False,
        hidden: str = "none",
        routing_k: int | None = None,
        execution: str = "auto",
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts=}")
        self.in_features, self.out_features, self.num_experts = in_features, out_features, num_experts
        self.execution = _check_form(execution)
        self.weight = nn.Parameter(torch.empty(num_experts, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_experts, out_features)) if bias else None
        _init_experts(self.weight, self.bias)
        self.router = create_routing(
            routing,
            in_features,
            num_experts,
            channels=out_features if per_channel else None,
            hidden=hidden,
            k=routing_k,
        )

    def route(self, x: Tensor) -> Tensor:
        """Routing weights (B, n) or (B, n, out) from the input features."""
        return self.router(x).weights

    def forward(self, x: Tensor, routing_weights: Tensor | None = None) -> Tensor:
        alpha = self.route(x) if routing_weights is None else routing_weights
        b, n, out = x.shape[0], self.num_experts, self.out_features
        _check_routing_weights(alpha, b, n, out)
        form = self.execution
        if form == "auto":
            form = pick_form(b, n, self.in_features * out, self.in_features * out)  # spatial size 1
        if form == "mixed":
            if alpha.dim() == 2:
                w = (alpha @ self.weight.view(n, -1)).view(b, out, -1)  # (B, out, in)
            else:
                w = torch.einsum("bno,noi->boi", alpha, self.weight)  # (B, out, in)
            y = torch.bmm(w, x[:, :, None]).squeeze(-1)  # (B, out)
        else:
            y = F.linear(x, self.weight.view(n * out, -1)).view(b, n, out)  # (B, n, out) every expert
            a = alpha if alpha.dim() == 3 else alpha[:, :, None]
            y = (y * a).sum(dim=1)
        if self.bias is not None:
            y = y + (alpha @ self.bias if alpha.dim() == 2 else (alpha * self.bias).sum(dim=1))
        return y

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, num_experts={self.num_experts}, execution={self.execution!r}"
