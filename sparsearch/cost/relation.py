"""Exact cost of a CNN + Relation Network (or CNN + MLP): the CNN's parts, the question encoder and the
head, per example, with the relation head's pair terms (see :mod:`sparsearch.config.relation`)."""

from __future__ import annotations

from itertools import pairwise

from sparsearch.config import RelationNetConfig
from sparsearch.cost.count import CostReport, LayerCost, count, register_count
from sparsearch.cost.formulas import linear_macs, linear_params


def _fixed(name: str, kind: str, macs: int, params: int) -> LayerCost:
    return LayerCost(name, kind, macs, macs, params)


def _mlp(widths: list[int]) -> tuple[int, int]:
    """MACs and parameters of Linear layers of ``widths`` (biases included in the parameters)."""
    pairs = list(pairwise(widths))
    return sum(linear_macs(a, b) for a, b in pairs), sum(linear_params(a, b) for a, b in pairs)


def count_relation_net(config: RelationNetConfig) -> CostReport:
    """The CNN's parts, then ``question`` (embedding and GRU, at ``question_tokens`` tokens), then the head:
    for the RN, ``g.objects`` (each of the n cells projected twice, the question once), ``g.pairs`` (g's
    other layers on each of the n² ordered pairs) and ``f``; for the baseline, ``f`` on the flattened grid."""
    c = config
    gates = 3 * c.question  # the GRU's update, reset and new gates
    question = _fixed(
        "question",
        "question",
        c.question_tokens * (linear_macs(c.embed, gates) + linear_macs(c.question, gates)),
        c.vocab * c.embed + linear_params(c.embed, gates) + linear_params(c.question, gates),
    )
    n, o, g = c.objects, c.object_width, c.g_width
    if c.head == "mlp":
        macs, params = _mlp([n * o + c.question, c.f_width, c.f_width, c.num_answers])
        head = (_fixed("f", "mlp", macs, params),)
    else:
        objects = _fixed(
            "g.objects",
            "relation",
            2 * n * linear_macs(o, g) + linear_macs(c.question, g),
            linear_params(o, g) + linear_params(o, g, bias=False) + linear_params(c.question, g, bias=False),
        )
        layers = c.g_layers - 1
        pairs = _fixed("g.pairs", "relation", layers * n * n * linear_macs(g, g), layers * linear_params(g, g))
        macs, params = _mlp([g, c.f_width, c.f_width, c.num_answers])
        head = (objects, pairs, _fixed("f", "relation", macs, params))
    return CostReport((*count(c.cnn).layers, question, *head))


register_count(RelationNetConfig, count_relation_net)
