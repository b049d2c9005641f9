"""Seed 000's CLEVR model as a network family: the modular CNN (its Table 4) feeding a Relation Network
(Santoro et al. 2017), or the RN paper's CNN + MLP baseline. The whole VQA model is one network: it
reads the image and the question's tokens and answers.

question tokens -> embedding -> GRU -> q (question wide); the CNN's top-k gates are conditioned on q
image -> modular CNN -> grid (B, c, H, W) -> objects o_i = (cell features, x, y), n = H·W of them
relation head: g over every ordered pair (o_i, o_j, q), summed over pairs, then f -> answers
    g's first layer is linear, so W·[o_i; o_j; q] = A·o_i + B·o_j + Q·q: each cell is projected once
    and the pairs are sums (broadcast), then g_layers - 1 layers of g_width on each of the n² pairs
mlp head: the flattened grid and q -> f -> answers (the baseline the RN paper compares with)

Costs are counted at ``question_tokens`` tokens per question (the GRU's cost grows with the length).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sparsearch.config.family import KnobUnit, NetworkFamily, TaskFit, build_fields, register_family
from sparsearch.config.layouts import clevr_cnn, register_layout
from sparsearch.config.resnext import NetConfig, plan
from sparsearch.config.serialize import config_from_dict
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int

__all__ = ["RELATION_HEADS", "RelationNetConfig", "clevr_rn"]

RELATION_HEADS = ("relation", "mlp")  # the RN, or the RN paper's CNN + MLP baseline
COORDINATES = 2  # (x, y) of a cell, appended to its features


@register_family
@dataclass(frozen=True)
class RelationNetConfig(NetworkFamily):
    """A CNN + Relation Network (or CNN + MLP) VQA model; its knobs are the CNN's."""

    family = "relation_net"
    description = "a CNN + Relation Network"
    hosts_question: ClassVar[bool] = True

    cnn: NetConfig
    head: str = "relation"
    vocab: int = 32  # question tokens, id 0 padding (fitted to the data)
    embed: int = 32  # word embedding width
    question: int = 64  # the GRU state q: the question vector of g, f and the CNN's gates
    question_tokens: int = 12  # the question length costs are counted at
    g_width: int = 64
    g_layers: int = 2  # layers of g; the first projects each cell once
    f_width: int = 128  # f's two hidden layers (the MLP baseline's too)
    num_answers: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.cnn, NetConfig):
            raise ConfigError(f"a CNN + Relation Network needs a ResNeXt-family CNN, got {type(self.cnn).__name__}")
        if self.head not in RELATION_HEADS:
            raise ConfigError(f"head={self.head!r}; allowed: {', '.join(RELATION_HEADS)}")
        for key in ("vocab", "embed", "question", "g_width", "f_width"):
            check_int(key, getattr(self, key), 1, MAX["channels"])
        check_int("question_tokens", self.question_tokens, 1, 1024)
        check_int("g_layers", self.g_layers, 1, 16)
        check_int("num_answers", self.num_answers, 2, MAX["classes"])
        if self.cnn.cond_dim not in (None, self.question):
            raise ConfigError(f"the CNN's gates read the question vector: cond_dim must be {self.question}")

    @property
    def input_size(self) -> int:  # type: ignore[override]
        return self.cnn.input_size

    @property
    def in_channels(self) -> int:
        return self.cnn.in_channels

    @property
    def grid(self) -> tuple[int, int]:
        """Height and width of the CNN's feature grid: each cell is an object of the relation head."""
        return plan(self.cnn).out_size

    @property
    def objects(self) -> int:
        height, width = self.grid
        return height * width

    @property
    def object_width(self) -> int:
        """An object's features: the CNN's output channels and its (x, y)."""
        return self.cnn.head_channels + COORDINATES

    def knob_units(self) -> tuple[KnobUnit, ...]:
        return self.cnn.knob_units()

    def with_knobs(self, **knobs: Any) -> RelationNetConfig:
        return replace(self, cnn=self.cnn.with_knobs(**knobs))

    def scaled(self, width: float, depth: tuple[int, ...] | None) -> RelationNetConfig:
        return replace(self, cnn=self.cnn.scaled(width, depth))

    def for_task(self, fit: TaskFit) -> RelationNetConfig:
        if fit.task != "vqa":
            raise ConfigError(f"{self.description} answers questions; it needs VQA data (e.g. sort-of-clevr)")
        cnn = self.cnn.for_task(TaskFit("vqa", fit.classes, fit.in_channels, cond_dim=self.question))
        return replace(self, cnn=cnn, num_answers=fit.classes, vocab=fit.vocab or self.vocab)

    @property
    def multi_stream(self) -> bool:
        return self.cnn.multi_stream

    def shareable_knobs(self) -> tuple[str, ...]:
        return self.cnn.shareable_knobs()

    def with_connectivity(self, connectivity: str) -> RelationNetConfig:
        return replace(self, cnn=self.cnn.with_connectivity(connectivity))

    def to_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in super().to_dict().items() if k != "cnn"}
        return {**fields, "cnn": self.cnn.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelationNetConfig:
        data = dict(data)
        if not isinstance(data.get("cnn"), dict):
            raise ConfigError("model config: a CNN + Relation Network needs its 'cnn' (an object)")
        data["cnn"] = config_from_dict(data["cnn"])
        return build_fields(cls, data, "model config")


def clevr_rn(
    input_size: int = 75,
    cardinality: int = 12,
    head: str = "relation",
    g_width: int = 64,
    g_layers: int = 2,
    f_width: int = 128,
    question: int = 64,
) -> RelationNetConfig:
    """Seed 000's CLEVR model at Sort-of-CLEVR's 75×75: the modular CNN (C = 12 paths of width 4 in each
    of its three blocks, a 1×1 convolution to 24) and a Relation Network head (or ``head="mlp"``)."""
    cnn = replace(clevr_cnn(input_size, cardinality), head="conv", cond_dim=question)
    return RelationNetConfig(cnn, head, question=question, g_width=g_width, g_layers=g_layers, f_width=f_width)


register_layout("clevr_rn", clevr_rn)
