"""The CNN + Relation Network model (and the CNN + MLP baseline) of :mod:`sparsearch.config.relation`.

The relation head never builds the (B, n², 2·o + q) pair tensor: g's first layer is linear, so each
cell is projected once by A and B, the question once by Q, and a pair's first activation is the
broadcast sum ReLU(A·o_i + B·o_j + Q·q + b). Its cost is exactly what :mod:`sparsearch.cost.relation`
counts.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

from sparsearch.config.relation import COORDINATES, RelationNetConfig
from sparsearch.models.network import Network
from sparsearch.models.registry import build_model, register_builder
from sparsearch.models.vqa import encode_question

__all__ = ["RelationNetwork"]


def _mlp(widths: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``widths`` with ReLU between them (dropout before the last)."""
    layers: list[nn.Module] = []
    for i, (fin, fout) in enumerate(pairwise(widths)):
        if i == len(widths) - 2 and dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(fin, fout))
        if i < len(widths) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class RelationNetwork(Network):
    """``forward(image, tokens, lengths=None)`` -> answer logits (B, num_answers)."""

    def __init__(self, config: RelationNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.cnn = build_model(c.cnn)
        self.embed = nn.Embedding(c.vocab, c.embed, padding_idx=0)
        self.gru = nn.GRU(c.embed, c.question, batch_first=True)
        height, width = c.grid
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coordinates", torch.stack([xs, ys], dim=-1).reshape(1, height * width, COORDINATES))
        if c.head == "relation":
            self.g_left = nn.Linear(c.object_width, c.g_width)  # A (with g's first bias)
            self.g_right = nn.Linear(c.object_width, c.g_width, bias=False)  # B
            self.g_question = nn.Linear(c.question, c.g_width, bias=False)  # Q
            self.g_rest = nn.Sequential(*(layer for _ in range(c.g_layers - 1) for layer in self._g_layer(c.g_width)))
            self.f = _mlp([c.g_width, c.f_width, c.f_width, c.num_answers], dropout=0.5)
        else:
            self.f = _mlp([c.objects * c.object_width + c.question, c.f_width, c.f_width, c.num_answers], dropout=0.5)

    @staticmethod
    def _g_layer(width: int) -> tuple[nn.Module, nn.Module]:
        return nn.Linear(width, width), nn.ReLU(inplace=True)

    def objects(self, image: Tensor, q: Tensor) -> Tensor:
        """(B, n, object_width): the CNN's cells (gated by the question) with their coordinates."""
        grid = self.cnn(image, q).flatten(2).transpose(1, 2)  # (B, n, channels)
        return torch.cat([grid, self.coordinates.expand(grid.shape[0], -1, -1)], dim=2)

    def forward(self, image: Tensor, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        q = encode_question(self.embed, self.gru, tokens, lengths)  # (B, question)
        objects = self.objects(image, q)
        if self.config.head == "mlp":
            return self.f(torch.cat([objects.flatten(1), q], dim=1))
        left, right = self.g_left(objects), self.g_right(objects)  # (B, n, g) each, one projection per cell
        first = left[:, :, None, :] + right[:, None, :, :] + self.g_question(q)[:, None, None, :]  # (B, n, n, g)
        pairs = self.g_rest(torch.relu(first).flatten(1, 2))  # (B, n², g)
        return self.f(pairs.sum(dim=1))

    def example_inputs(self, batch: int = 1) -> tuple[Tensor, ...]:
        """An image and a question of ``question_tokens`` tokens (the length its cost is counted at)."""
        c = self.config
        image = torch.randn(batch, c.in_channels, c.input_size, c.input_size)
        tokens = (
            torch.randint(1, c.vocab, (batch, c.question_tokens))
            if c.vocab > 1
            else torch.ones(batch, c.question_tokens, dtype=torch.long)
        )
        return image, tokens, torch.full((batch,), c.question_tokens, dtype=torch.long)

    def balance_loss(self) -> Tensor | float:
        """The CNN's top-k balancing terms (seed 000, App. C)."""
        return self.cnn.balance_loss()

    def set_knobs(self, config: RelationNetConfig) -> None:
        self.cnn.set_knobs(config.cnn)


register_builder(RelationNetConfig, RelationNetwork)
