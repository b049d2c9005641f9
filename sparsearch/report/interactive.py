"""The report's interactive page (plotly): the same figures as the PNGs, with every trial's
configuration on hover. plotly.js is written once beside the page (``plotly.min.js``, from the installed
plotly), so the page draws offline and stays small; element ids are fixed, so the same report data
gives the same HTML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline

from sparsearch.report.data import x_axis
from sparsearch.report.figures import BUDGET, FAINT, FRONT, REFERENCE, SEARCHED  # the PNGs' colours

__all__ = ["PLOTLY_JS", "interactive_html", "write_interactive"]

PLOTLY_JS = "plotly.min.js"  # beside report.html; the page loads it by this relative name


def _hover(p: dict[str, Any]) -> str:
    parts = [f"trial {p['number']}"]
    if p.get("reference"):
        parts.append(p["reference"])
    parts.append(p.get("configuration") or "")
    if p.get("accuracy") is not None:
        parts.append(f"accuracy {p['accuracy']:.4f}")
    if p.get("finetuned_accuracy") is not None:
        parts.append(f"fine-tuned {p['finetuned_accuracy']:.4f}")
    if p.get("params") is not None:
        parts.append(f"params {p['params']:,}")
    if p.get("latency_ms") is not None:
        parts.append(f"latency {p['latency_ms']:.1f} ms")
    return "<br>".join(html.escape(x) for x in parts if x)


def _pareto(data: dict[str, Any]) -> go.Figure:
    axis = x_axis(data)
    scale, key = axis["scale"], axis["key"]
    points = data["points"]
    fig = go.Figure()
    groups = (
        ("searched", [p for p in points if p["accuracy"] is not None and not p["reference"]], SEARCHED, "circle", 0.7),
        ("references", [p for p in points if p["accuracy"] is not None and p["reference"]], REFERENCE, "diamond", 1),
    )
    for name, chosen, color, symbol, opacity in groups:
        fig.add_trace(
            go.Scatter(
                x=[p[key] / scale for p in chosen],
                y=[p["accuracy"] for p in chosen],
                mode="markers",
                name=f"{name} ({len(chosen)})",
                marker={"color": color, "symbol": symbol, "size": 8 if symbol == "circle" else 10},
                opacity=opacity,
                text=[_hover(p) for p in chosen],
                hoverinfo="text",
            )
        )
    front = data["pareto"]
    by_number = {p["number"]: p for p in points}
    fig.add_trace(
        go.Scatter(
            x=[r["target"][axis["target_key"]] / scale for r in front],
            y=[r["accuracy"] for r in front],
            mode="lines+markers",
            line={"shape": "hv", "color": FRONT},
            marker={"symbol": "circle-open", "size": 12, "color": FRONT},
            name=f"Pareto ({len(front)})",
            text=[_hover(by_number[r["number"]]) for r in front],
            hoverinfo="text",
        )
    )
    over = [p for p in points if p["state"] == "complete" and not p["feasible"] and p[key] is not None]
    if over:
        fig.add_trace(
            go.Scatter(
                x=[p[key] / scale for p in over],
                y=[0] * len(over),
                yaxis="y2",
                mode="markers",
                marker={"symbol": "x", "color": FAINT, "size": 6},
                opacity=0.5,
                name=f"over budget, not trained ({len(over)})",
                text=[_hover(p) for p in over],
                hoverinfo="text",
            )
        )
    fig.add_vline(x=axis["budget"] / scale, line_dash="dash", line_color=BUDGET, annotation_text="budget")
    fig.update_layout(
        title=f"{data['study']}: proxy accuracy vs target {data.get('objective', {}).get('name', 'FLOPs')}",
        xaxis_title=axis["label"],
        yaxis_title="proxy accuracy",
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False},
        template="plotly_white",
        height=520,
    )
    return fig


def _hypervolume(data: dict[str, Any]) -> go.Figure:
    history = data["hypervolume_history"]
    fig = go.Figure(
        go.Scatter(
            x=[h["finished"] for h in history],
            y=[h["hypervolume"] for h in history],
            mode="lines",
            line={"color": SEARCHED},
            text=[f"after trial {h['trial']}" for h in history],
        )
    )
    fig.update_layout(
        title="hypervolume over trials", xaxis_title="trials finished", template="plotly_white", height=320
    )
    return fig


def _importances(data: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for key, color in (("accuracy", SEARCHED), ("flops", BUDGET)):
        values = data["importances"][key]["values"]
        names = list(values)[::-1]
        fig.add_trace(
            go.Bar(x=[values[n] for n in names], y=names, orientation="h", name=f"for {key}", marker_color=color)
        )
    fig.update_layout(title="parameter importances (PED-ANOVA)", template="plotly_white", barmode="group", height=420)
    return fig


def _configurations(data: dict[str, Any]) -> go.Figure:
    conf = data["configurations"]
    rows = conf["rows"]
    fig = go.Figure(
        go.Heatmap(
            z=[r["share"] for r in rows],
            x=conf["columns"],
            y=[f"trial {r['trial']}" for r in rows],
            text=[["" if v is None else str(v) for v in r["values"]] for r in rows],
            texttemplate="%{text}",
            zmin=0,
            zmax=1,
            colorscale="Viridis",
        )
    )
    fig.update_layout(
        title="Pareto configurations: value / largest allowed", template="plotly_white", height=200 + 30 * len(rows)
    )
    return fig


def interactive_html(data: dict[str, Any]) -> str:
    """A page with the four interactive figures; it loads plotly.js from :data:`PLOTLY_JS` beside it."""
    parts = []
    figures = [("pareto", _pareto(data)), ("hypervolume", _hypervolume(data))]
    if any(data["importances"][k]["values"] for k in ("accuracy", "flops")):
        figures.append(("importances", _importances(data)))
    if data["configurations"]["rows"] and data["configurations"]["columns"]:
        figures.append(("configurations", _configurations(data)))
    for i, (name, fig) in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="directory" if i == 0 else False, div_id=name))
    title = html.escape(f"Study {data['study']}")
    return (
        f'<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>{title}</title></head>\n<body>\n'
        f"<h1>{title}</h1>\n<p>{html.escape(_caption(data))}</p>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def write_interactive(data: dict[str, Any], directory: Path) -> None:
    """``report.html`` and the plotly.js it loads, into ``directory``: the page needs no network."""
    (directory / "report.html").write_text(interactive_html(data), encoding="utf-8")
    (directory / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")


def _caption(data: dict[str, Any]) -> str:
    about = data["about"]
    return (
        f"Space {data['space']}; budget {data['budget']} per example on the target "
        f"({about['target']['model']} at {about['target']['input_size']}x{about['target']['input_size']}); "
        f"accuracy of the proxy on {about['proxy']['dataset']} ({', '.join(about['accuracy']['splits'])}). "
        f"{about['units']['flops']}."
    )
