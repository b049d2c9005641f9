"""Exact costs from shapes: formulas per layer kind, totals per configuration, budgets."""

from sparsearch.cost.budget import format_flops, parse_budget
from sparsearch.cost.count import CostReport, LayerCost, count

__all__ = ["CostReport", "LayerCost", "count", "format_flops", "parse_budget"]
