"""Markdown tables of a study's summary, shared by ``pareto.md`` and the report page."""

from __future__ import annotations

from typing import Any

from sparsearch.cost import format_flops
from sparsearch.study.noise import describe_comparison
from sparsearch.study.structure import describe

__all__ = ["pareto_table", "reference_lines"]


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def pareto_table(pareto: list[dict[str, Any]]) -> list[str]:
    """The Pareto trials: configuration, target cost, proxy and fine-tuned accuracy, latency."""
    lines = [
        "| trial | reference | configuration | target FLOPs | target MACs | target params "
        "| proxy accuracy | fine-tuned | proxy latency (ms) | target latency (ms) | speed-up over dense |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in pareto:
        target_cost = row["target"]
        tuned = row.get("finetuned", {}).get("accuracy")
        latency = row.get("latency_ms")
        shown = "" if latency is None else f"{latency:.1f} (batch {row.get('latency_batch')})"
        timed = row.get("target_latency") or {}
        target_ms = "<br>".join(f"{v['ms']:.1f} (batch {b})" for b, v in timed.items())
        if target_cost.get("predicted_ms") is not None:  # a latency budget's prediction (batch 1)
            target_ms += f"{'<br>' if target_ms else ''}predicted {target_cost['predicted_ms']:.1f}"
        speedup = "<br>".join(f"{v['speedup']:.2f}× (dense {v['dense_ms']:.1f} ms)" for v in timed.values())
        lines.append(
            f"| {row['number']} | {row['reference'] or ''} | {describe(row['values'])} "
            f"| {format_flops(target_cost['executed_flops'])} | {format_flops(target_cost['executed_flops'], 'MACs')} "
            f"| {target_cost['params'] / 1e6:.2f} M | {_pct(row['accuracy'])} | {_pct(tuned)} "
            f"| {shown} | {target_ms} | {speedup} |"
        )
    return lines


def _less(ref: dict[str, Any]) -> str:
    at = ref.get("at", "FLOPs")
    return "fewer FLOPs" if at == "FLOPs" else f"lower {at}"


def reference_lines(references: list[dict[str, Any]]) -> list[str]:
    """One line per reference: over the budget, or its accuracy against the searched trials (a tie
    inside the noise is said to be one)."""
    lines = []
    for ref in references:
        if not ref["feasible"]:
            ms = ref["target"].get("predicted_ms")
            cost = format_flops(ref["target"]["executed_flops"]) + ("" if ms is None else f", {ms:.1f} ms predicted")
            lines.append(f"- {ref['reference']}: {cost}, over the budget (not trained).")
            continue
        text = (
            f"- {ref['reference']} (trial {ref['number']}, {format_flops(ref['flops'])}): accuracy "
            f"{ref['accuracy']:.4f}; of the searched trials at equal or {_less(ref)}, {describe_comparison(ref)}"
        )
        if "finetuned_accuracy" in ref:
            text += (
                f". Fine-tuned {ref['finetuned_accuracy']:.4f}; of the fine-tuned Pareto configurations, "
                f"{describe_comparison(ref, 'finetuned_')}"
            )
        lines.append(text + ".")
    return lines
