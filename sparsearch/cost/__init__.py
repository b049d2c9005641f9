"""Exact costs from shapes: formulas per layer kind, totals per configuration, budgets."""

from sparsearch.cost.budget import (
    budget_text,
    format_flops,
    latency_budget_text,
    parse_budget,
    parse_latency_budget,
)
from sparsearch.cost.count import CostReport, LayerCost, cost_summary, count, register_count

# Each family's formulas register themselves beside the count (a new family registers its own).
from sparsearch.cost import condnet, relation, resnext, user  # noqa: F401  isort: skip

__all__ = [
    "CostReport",
    "LayerCost",
    "budget_text",
    "cost_summary",
    "count",
    "format_flops",
    "latency_budget_text",
    "parse_budget",
    "parse_latency_budget",
    "register_count",
]
