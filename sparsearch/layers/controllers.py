"""Gate controllers: score the C paths of a block per example and pick the top k (seed 000, §2.1).

A controller returns :class:`Gates`: the chosen path indices, a 0/1 mask and the gate values (routing
weights zeroed outside the top k) that scale the chosen paths' outputs.

Ties: ranking is by the routing scores (logits), which separate paths that ReLU or saturation would
make equal. Where scores still tie exactly (e.g. a constant input at initialisation), the tie goes to
the earlier path in a random order, drawn anew at each training step and fixed per layer in eval, so
ties never systematically favour the lowest indices.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from sparsearch.layers.routing import Routing, create_routing

__all__ = ["Gates", "ImageGate", "QuestionGate", "select_top_k"]


class Gates(NamedTuple):
    """Per-example path selection of one block."""

    index: Tensor  # (B, k) chosen paths, in descending score order
    mask: Tensor  # (B, C) 1.0 where chosen
    weights: Tensor  # (B, C) gate values, zero outside the chosen paths


def select_top_k(scores: Tensor, k: int, order: Tensor) -> Tensor:
    """Indices of the k highest scores per row; exact ties go to the path earlier in ``order``.

    Computed by ranking (for each path, the paths ahead of it: a higher score, or an equal score and an
    earlier place in ``order``) rather than by sorting, so the rule is exact and the same in every
    runtime: ONNX and torch.export programs hold comparisons and sums, not a stable sort.

    Args:
        scores: (B, C) ranking scores.
        k: paths to keep, 1 <= k <= C.
        order: (C,) a permutation of the paths used to break ties.

    Returns:
        (B, k) path indices, in descending score order.
    """
    c = scores.shape[1]
    scores = torch.where(torch.isnan(scores), torch.inf, scores)  # NaN first, as a descending sort puts it
    paths = torch.arange(c, device=scores.device)
    place = torch.zeros_like(order).scatter_(0, order, paths)  # place[i]: where path i stands in `order`
    mine, theirs = scores[:, :, None], scores[:, None, :]  # (B, C, 1) path i, (B, 1, C) path j
    ahead = (theirs > mine) | ((theirs == mine) & (place[None, None, :] < place[None, :, None]))
    rank = ahead.sum(dim=2)  # (B, C): how many paths rank ahead of path i, a permutation of 0..C-1
    chosen = rank[:, :, None] == paths[None, None, :k]  # (B, C, k): path i holds rank r
    return (chosen.long() * paths[None, :, None]).sum(dim=1)


class _GateController(nn.Module):
    """Shared selection logic; subclasses compute the routing output from the block input."""

    def __init__(self, num_paths: int, k: int, routing: Routing) -> None:
        super().__init__()
        if not 1 <= k <= num_paths:
            raise ValueError(f"k must be in 1..{num_paths} (the cardinality), got {k=}")
        if routing.name == "constant" and k < num_paths:
            raise ValueError(f"constant routing cannot rank paths; use k == {num_paths}, got {k=}")
        self.num_paths = num_paths
        self.k = k
        self.routing = routing
        # The eval tie-break order is saved with the weights, so a loaded model picks the same paths.
        self.register_buffer("tiebreak", torch.randperm(num_paths))

    def select(self, weights: Tensor, scores: Tensor) -> Gates:
        b, c = scores.shape
        if self.k == c:
            index = torch.arange(c, device=scores.device).expand(b, c)
            return Gates(index, torch.ones_like(weights), weights)
        order = torch.randperm(c, device=scores.device) if self.training else self.tiebreak
        index = select_top_k(scores.detach(), self.k, order)  # (B, k)
        mask = torch.zeros_like(weights).scatter_(1, index, 1.0)  # (B, C)
        return Gates(index, mask, weights * mask)


class ImageGate(_GateController):
    """Image-conditioned controller: global average pool of the block input -> routing.

    Args:
        in_channels: channels of the block input.
        num_paths: C, the paths to score.
        k: paths kept per example.
        routing: a registered routing function name.
        hidden: routing hidden layer size (see :data:`~sparsearch.layers.routing.HIDDEN_SIZES`).
    """

    def __init__(
        self, in_channels: int, num_paths: int, k: int, routing: str = "softmax", *, hidden: str = "none"
    ) -> None:
        super().__init__(num_paths, k, create_routing(routing, in_channels, num_paths, hidden=hidden, k=k))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Gates:
        if cond is not None:
            raise ValueError("ImageGate takes no cond; build the block with cond_dim to condition on it")
        # Constant routing reads nothing: skip the pooling pass (a view of the right batch instead).
        pooled = x.mean(dim=(2, 3)) if self.routing.has_parameters else x[:, :, 0, 0]  # (B, in)
        weights, scores = self.routing(pooled)  # (B, C) each
        return self.select(weights, scores)


class QuestionGate(_GateController):
    """Question-conditioned controller (seed 000, App. B).

    Soft attention over the image grid from image and question features, then
    ``u = W_I·ṽ_I + v_Q`` and routing(u) (the seed's MLP + ReLU + L1 is ``routing="relu_l1"``)::

        h_A = tanh(W_IA v_i + W_QA v_Q + b_A)      per grid cell i
        p   = softmax_i(W_P h_A + b_P)
        ṽ_I = Σ_i p_i v_i

    Args:
        in_channels: channels of the block input (A, features per grid cell).
        cond_dim: width of the question vector (B in the seed).
        num_paths: C, the paths to score.
        k: paths kept per example.
        routing: a registered routing function name.
        attention_dim: hidden width of the attention (defaults to ``cond_dim``).
        hidden: routing hidden layer size.
    """

    def __init__(
        self,
        in_channels: int,
        cond_dim: int,
        num_paths: int,
        k: int,
        routing: str = "relu_l1",
        *,
        attention_dim: int | None = None,
        hidden: str = "none",
    ) -> None:
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be a positive int, got {cond_dim=}")
        super().__init__(num_paths, k, create_routing(routing, cond_dim, num_paths, hidden=hidden, k=k))
        att = attention_dim or cond_dim
        self.cond_dim = cond_dim
        self.image_att = nn.Linear(in_channels, att, bias=False)  # W_IA
        self.question_att = nn.Linear(cond_dim, att)  # W_QA, b_A
        self.att_logit = nn.Linear(att, 1)  # W_P, b_P
        self.image_proj = nn.Linear(in_channels, cond_dim)  # W_I: image features -> question space

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Gates:
        if cond is None or cond.shape != (x.shape[0], self.cond_dim):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"QuestionGate needs cond of shape ({x.shape[0]}, {self.cond_dim}), got {got}")
        v = x.flatten(2).transpose(1, 2)  # (B, HW, A) one feature vector per grid cell
        h = torch.tanh(self.image_att(v) + self.question_att(cond)[:, None, :])  # (B, HW, att)
        p = self.att_logit(h).squeeze(-1).softmax(dim=1)  # (B, HW)
        attended = torch.bmm(p[:, None, :], v).squeeze(1)  # (B, A)
        u = self.image_proj(attended) + cond  # (B, cond_dim) query in the question space
        weights, scores = self.routing(u)
        return self.select(weights, scores)
