"""Batch statistics over the global batch of a data-parallel step.

Under ``torchrun`` each process holds a shard of the global batch. Three things in these layers are
statistics of the batch rather than of one example: batch norm's mean and variance, the per-path batch
norm of the top-k block (:func:`~sparsearch.layers.topk._path_batch_norm`), and the top-k gates' CV²
balance term. Inside :func:`global_batch`, each sums its per-shard totals across the processes
(``torch.distributed.nn.functional.all_reduce``, whose backward sums the gradients too), so a step of N
processes computes what one process computes on the whole global batch. Outside it (evaluation,
batch-norm recalibration, a run outside ``torchrun``) nothing is exchanged.

The sums are taken in float64, so a job's statistics are the same, to float32 rounding, whichever number
of processes shares the global batch: ``torchrun --nproc_per_node=1`` and ``=2`` train the same weights
(``tests/train/test_distributed.py``). A run outside ``torchrun`` uses PyTorch's batch-norm kernel, which
rounds otherwise; through the ReLUs' kinks two roundings part after a few steps (by about 1e-2 here).

``torch.nn.SyncBatchNorm`` does the first of the three, on GPUs only; this module does all three, on
any device and backend (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["GlobalBatchNorm2d", "global_batch", "global_sum", "syncing"]

_STATE: dict[str, object] = {"group": None, "active": False}


def syncing() -> bool:
    """True inside :func:`global_batch` (in a process group, of any size)."""
    return bool(_STATE["active"])


def global_sum(t: Tensor) -> Tensor:
    """``t`` summed over the processes of the global batch (differentiable); ``t`` itself outside
    :func:`global_batch`."""
    if not _STATE["active"]:
        return t
    return _GlobalSum.apply(t, _STATE["group"])


class _GlobalSum(torch.autograd.Function):
    """Sum over the processes; its gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, t: Tensor, group) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = t.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        import torch.distributed as dist

        total = grad.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=ctx.group)
        return total, None


@contextlib.contextmanager
def global_batch(model: nn.Module, group=None) -> Iterator[None]:
    """Within the block, ``model``'s batch statistics span the processes of ``group`` (default: all).

    Every ``nn.BatchNorm2d`` of ``model`` computes its statistics as :class:`GlobalBatchNorm2d` while
    inside; the modules are the same objects (their parameters and buffers untouched) and become plain
    batch norms again on the way out.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        yield
        return
    norms = [m for m in model.modules() if type(m) is nn.BatchNorm2d]
    for m in norms:
        m.__class__ = GlobalBatchNorm2d
    before = dict(_STATE)
    _STATE.update(group=group, active=True)
    try:
        yield
    finally:
        _STATE.update(before)
        for m in norms:
            m.__class__ = nn.BatchNorm2d


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the global batch inside
    :func:`global_batch` (two all-reduces: the sums and the count, then the centred squares)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _STATE["active"]):
            return super().forward(x)
        c, dtype = x.shape[1], x.dtype
        x = x.float()  # statistics in float32 under autocast too
        dims = (0, 2, 3)
        # Sums in float64: the processes' partial sums add up to what one process sums, to float32 rounding.
        local = torch.cat([x.sum(dims, dtype=torch.float64), x.new_full((1,), x.numel() / c, dtype=torch.float64)])
        total = global_sum(local)
        count = total[-1]
        mean = (total[:-1] / count).float()
        centred = x - mean.view(1, c, 1, 1)
        var = (global_sum(centred.square().sum(dims, dtype=torch.float64)) / count).float()
        count = count.float()
        if self.track_running_stats:
            self._track(mean.detach(), var.detach(), count.detach())
        out = centred / torch.sqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out.to(dtype)

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        """Running statistics as nn.BatchNorm2d keeps them (momentum None: a cumulative average)."""
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp_min(1)
        self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
        self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
