from __future__ import annotations

from sparsearch.study.tables import pareto_table, reference_lines

ROW = {
    "number": 7,
    "reference": None,
    "values": {"conv3.k": 4},
    "target": {"executed_flops": 2 * 10**9, "params": 1_500_000},
    "accuracy": 0.81234,
    "latency_ms": 12.345,
    "latency_batch": 32,
    "finetuned": {"accuracy": 0.82},
}


def test_the_pareto_table_has_a_row_per_trial_with_units() -> None:
    lines = pareto_table([ROW])
    assert len(lines) == 3 and lines[0].startswith("| trial | reference | configuration | target FLOPs")
    assert lines[2] == "| 7 |  | k 4 | 2 GFLOPs | 1 GMACs | 1.50 M | 0.8123 | 0.8200 | 12.3 (batch 32) |  |  |"
    timed = {**ROW, "target_latency": {"1": {"ms": 90.04, "dense_ms": 300.0, "speedup": 3.332}}}
    assert pareto_table([timed])[2].endswith("| 12.3 (batch 32) | 90.0 (batch 1) | 3.33× (dense 300.0 ms) |")


def test_reference_lines_say_over_budget_or_compare() -> None:
    over = {"reference": "uniform k = C", "feasible": False, "target": {"executed_flops": 6 * 10**10}}
    lines = reference_lines([over])
    assert lines == ["- uniform k = C: 60 GFLOPs, over the budget (not trained)."]
