"""``report.md`` of a compaction: what was removed and why, what it saved, and how it was checked."""

from __future__ import annotations

from typing import Any

from sparsearch.cost import format_flops

__all__ = ["markdown"]


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before:+.1%}" if before else "n/a"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page that reads on its own."""
    c, acc, eq = report["costs"], report["accuracy"], report["equivalence"]
    b, a = c["before"], c["after"]
    lines = [
        f"# Compaction of `{report['source']}`",
        "",
        f"{report['model']['network']} ({report['model']['task']}), data `{report['data']}`; calibration on "
        f"{report['calibration']['examples']} examples ({report['calibration']['batches']} batches) of the "
        f"{report['calibration']['split']} split. Costs are {report['units']}.",
        "",
        "| | before | after | change |",
        "|---|---:|---:|---:|",
        f"| parameters | {b['params']:,} | {a['params']:,} | {_change(b['params'], a['params'])} |",
    ]
    for key, label in (
        ("network_executed_flops", "network FLOPs, executed (analytic)"),
        ("network_dense_flops", "network FLOPs, dense (analytic)"),
        ("model_flops", "model FLOPs (FlopCounterMode)"),
    ):
        lines.append(f"| {label} | {format_flops(b[key])} | {format_flops(a[key])} | {_change(b[key], a[key])} |")
    for row in report["latency"]:
        lines.append(
            f"| latency, batch {row['batch']} ({report['device']}) | {row['before_ms']:.2f} ms | "
            f"{row['after_ms']:.2f} ms | {row['speedup']:.2f}x faster |"
        )
    final = f", after channel pruning {acc['final']:.4f}" if "final" in acc else ""
    lines += [
        "",
        "## Checks",
        "",
        f"- Outputs on the calibration batches, computed in float64: largest absolute difference "
        f"**{eq['max_abs_diff']:.3g}** (allowed {eq['atol']:g}; "
        f"{'exact compaction' if eq['exact'] else 'includes usage-based removals'}): "
        f"{'passed' if eq['passed'] else 'FAILED'}. In float32 the models differ by "
        f"{eq['max_abs_diff_float32']:.3g}, against a float32 rounding error of the source itself of "
        f"{eq['source_float32_rounding']:.3g}.",
        f"- Accuracy on the {acc['split']} split ({acc['examples']} examples): source {acc['before']:.4f}, "
        f"compacted {acc['compacted']:.4f}{final}.",
    ]
    if "export" in report:
        lines.append(
            f"- `torch.export` program `{report['export']['file']}` (dynamic batch) reloaded: largest difference "
            f"{report['export']['max_abs_diff']:.3g}."
        )
    graph = report.get("graph")
    if graph:
        lines += [
            "",
            "## Connectivity",
            "",
            f"{graph['nodes']} blocks, {graph['edges']} connections; {graph['dead']} dead branches "
            f"(no path to the head), found in {len(graph['cascade'])} rounds of the cascade.",
            "",
            "| module | branches | live | dead | fan-in of live branches |",
            "|---|---:|---:|---|---|",
        ]
        for m in graph["modules"]:
            fan = sorted(set(m["fan_in"]))
            lines.append(
                f"| {m['block']} | {m['branches']} | {len(m['live'])} | {m['dead'] or '-'} | "
                f"{', '.join(map(str, fan))} |"
            )
        if "picture" in report:
            lines += ["", f"![learned connectivity]({report['picture']})"]
    lines += ["", "## Removals", ""]
    if not report["removals"]:
        lines.append("None.")
    for r in report["removals"]:
        lines.append(f"- `{r['module']}` ({r['op']}): {r['summary']}")
    if report.get("channels"):
        ch = report["channels"]
        lines += [
            "",
            f"Channel pruning: {ch['ratio']:.0%} of the inner channels by {ch['importance']} importance "
            f"(rounded to {ch['round_to']}), {ch['layers']} blocks.",
        ]
    if report.get("finetune"):
        lines.append(f"Fine-tuned for {report['finetune']['epochs']} epochs at lr {report['finetune']['lr']:g}.")
    return "\n".join(lines) + "\n"
