"""The VQA model around a CNN backbone (seed 002's bottom-up/top-down model; seed 000 feeds its question
vector to the backbone's top-k gate controllers).

question tokens -> word embedding -> GRU -> q (B, hidden)
image -> backbone(image, cond=q) -> grid (B, ch, H, W) -> regions v (B, H·W, ch)
top-down attention: a_i = softmax_i(w · (ReLU(W_v v_i) ⊙ ReLU(W_q q)))   (the projection attention)
fusion: ReLU(W_q' q) ⊙ ReLU(W_v' Σ_i a_i v_i) -> classifier (weight-normed, ReLU, dropout) -> logits

Training uses soft scores (:func:`soft_scores`) and binary cross-entropy over the answers
(:func:`vqa_loss`); :func:`vqa_accuracy` is the VQA accuracy of the arg-max answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from sparsearch.config import TaskFit, layout
from sparsearch.errors import ConfigError
from sparsearch.models.registry import build_model, fit_config

__all__ = ["VQAModel", "create_vqa_model", "encode_question", "soft_scores", "vqa_accuracy", "vqa_loss"]


def _fc(fin: int, fout: int) -> nn.Module:
    """Weight-normed linear layer + ReLU (seed 002's FCNet)."""
    return nn.Sequential(weight_norm(nn.Linear(fin, fout), dim=None), nn.ReLU(inplace=True))


def encode_question(embed: nn.Embedding, gru: nn.GRU, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
    """(B, T) token ids -> (B, hidden): the GRU state after the last real token.

    With ``lengths``, padding (id 0, on the right) is skipped exactly. Without, the last position is
    taken as the end of every question: pad on the left, as seed 002 does (its GRU then also reads
    the zero vectors of the padding first).
    """
    words = embed(tokens)  # (B, T, embed)
    if lengths is None:
        return gru(words)[1][0]  # final state (1, B, hidden) -> (B, hidden)
    if torch.compiler.is_compiling():  # a traced program (export): no packed sequences there
        # The state after the last real token is the output at that step (one layer, one direction).
        outputs = gru(words)[0]  # (B, T, hidden)
        last = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
        return outputs.gather(1, last).squeeze(1)
    packed = nn.utils.rnn.pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return gru(packed)[1][0]


class VQAModel(nn.Module):
    """Question encoder, backbone, top-down attention, fusion and classifier.

    Args:
        backbone: a module mapping ``(image, cond)`` to a feature grid, with ``out_channels``.
        vocab_size: tokens of the question vocabulary; id 0 is padding.
        num_answers: candidate answers (classifier outputs).
        embed_dim: word embedding width (300 in seed 002, for GloVe).
        hidden: GRU state and fusion width (1024 in seed 002); also the gates' ``cond_dim``.
        dropout: dropout of the attention and of the classifier (0.2 and 0.5 in seed 002).
    """

    def __init__(
        self,
        backbone: nn.Module,
        vocab_size: int,
        num_answers: int,
        embed_dim: int = 300,
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for key, value in (
            ("vocab_size", vocab_size),
            ("num_answers", num_answers),
            ("embed_dim", embed_dim),
            ("hidden", hidden),
        ):
            if value < 1:
                raise ConfigError(f"{key}={value} must be a positive integer")
        channels = backbone.out_channels
        self.backbone = backbone
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.att_v, self.att_q = _fc(channels, hidden), _fc(hidden, hidden)
        self.att_logit = weight_norm(nn.Linear(hidden, 1), dim=None)
        self.q_net, self.v_net = _fc(hidden, hidden), _fc(channels, hidden)
        self.classifier = nn.Sequential(
            weight_norm(nn.Linear(hidden, 2 * hidden), dim=None),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            weight_norm(nn.Linear(2 * hidden, num_answers), dim=None),
        )
        self.dropout = nn.Dropout(dropout * 0.4)

    def encode_question(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) token ids -> (B, hidden): see :func:`encode_question`."""
        return encode_question(self.embed, self.gru, tokens, lengths)

    def forward(self, image: Tensor, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        q = self.encode_question(tokens, lengths)  # (B, hidden)
        grid = self.backbone(image, q)  # (B, ch, H, W); the question also drives the top-k gates
        v = grid.flatten(2).transpose(1, 2)  # (B, H·W, ch) one region per grid cell
        joint = self.att_v(v) * self.att_q(q)[:, None, :]  # (B, H·W, hidden)
        att = self.att_logit(self.dropout(joint)).softmax(dim=1)  # (B, H·W, 1)
        attended = (att * v).sum(dim=1)  # (B, ch)
        return self.classifier(self.q_net(q) * self.v_net(attended))  # (B, answers)


def create_vqa_model(
    backbone: str,
    vocab_size: int,
    num_answers: int,
    *,
    hidden: int = 1024,
    embed_dim: int = 300,
    dropout: float = 0.5,
    **backbone_config: object,
) -> VQAModel:
    """A VQA model around a registered ResNeXt-family layout, its gates conditioned on the question.

    ``backbone_config`` goes to the layout (e.g. ``input_size=64, k=6, routing="relu_l1"``); a
    classifier head is replaced by the feature grid.
    """
    config = layout(backbone, **backbone_config)
    if not config.feature_channels():
        raise ConfigError(
            f"backbone {backbone!r} is not a ResNeXt-family layout; it has no feature grid for the VQA model"
        )
    fit = TaskFit("vqa", num_answers, config.in_channels, cond_dim=hidden)
    backbone_net = build_model(fit_config(config, fit))
    return VQAModel(backbone_net, vocab_size, num_answers, embed_dim, hidden, dropout)


def soft_scores(answers: list[list[int]], num_answers: int, full_at: int = 3) -> Tensor:
    """VQA soft targets: min(1, count / full_at) for each answer given by the annotators.

    VQA v2 has 10 annotators and a full score at 3 agreeing (``full_at=3``); a dataset with one answer
    per question, like easy-VQA, uses ``full_at=1``.
    """
    if full_at < 1:
        raise ConfigError(f"full_at={full_at} must be a positive integer")
    scores = torch.zeros(len(answers), num_answers)
    for row, given in enumerate(answers):
        for answer in given:
            if not 0 <= answer < num_answers:
                raise ConfigError(f"answer id {answer} out of range 0..{num_answers - 1} in question {row}")
            scores[row, answer] += 1.0 / full_at
    return scores.clamp_(max=1.0)


def vqa_loss(logits: Tensor, scores: Tensor) -> Tensor:
    """Binary cross-entropy against the soft scores, summed over answers, averaged over questions."""
    return F.binary_cross_entropy_with_logits(logits, scores) * scores.shape[1]


def vqa_accuracy(logits: Tensor, scores: Tensor) -> Tensor:
    """Mean soft score of the arg-max answer: the VQA accuracy."""
    return scores.gather(1, logits.argmax(dim=1, keepdim=True)).mean()
