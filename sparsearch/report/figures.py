"""The report's static figures (matplotlib, PNG): the Pareto front, hypervolume over trials, parameter
importances and the Pareto configurations per layer.

Figures are drawn with matplotlib's object API (no pyplot, no display needed) and saved without a
timestamp, so the same report data gives the same PNG bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sparsearch.report.data import x_axis

__all__ = ["FIGURES", "draw_figures", "figures_of"]

FIGURES = ("pareto.png", "hypervolume.png", "importances.png", "configurations.png", "fidelity.png")
DPI = 110
METADATA = {"Software": None}  # no version string: the bytes depend on the data only

SEARCHED, REFERENCE, FRONT, BUDGET, FAINT = "#4c72b0", "#dd8452", "#c44e52", "#55a868", "#b0b0b0"


def figures_of(data: dict[str, Any]) -> list[str]:
    """The figures a report of ``data`` has: ``fidelity.png`` only once the study is validated."""
    return [name for name in FIGURES if name != "fidelity.png" or data.get("fidelity")]


def draw_figures(data: dict[str, Any], directory: Path) -> list[str]:
    """Write every figure into ``directory``; returns their file names."""
    written = []
    for name, draw in (
        ("pareto.png", _pareto),
        ("hypervolume.png", _hypervolume),
        ("importances.png", _importances),
        ("configurations.png", _configurations),
        ("fidelity.png", _fidelity),
    ):
        fig = draw(data)
        if fig is None:
            continue
        fig.savefig(directory / name, dpi=DPI, metadata=METADATA)
        written.append(name)
    return written


def _unit(data: dict[str, Any]) -> tuple[float, str]:
    """GFLOPs or MFLOPs for the x axis, whichever the budget reads best in."""
    return (1e9, "GFLOPs") if data["budget_flops"] >= 1e9 else (1e6, "MFLOPs")


def _pareto(data: dict[str, Any]) -> Figure:
    axis = x_axis(data)
    scale, key = axis["scale"], axis["key"]
    fig = Figure(figsize=(9.5, 4.8), layout="constrained")
    ax = fig.subplots()
    points = data["points"]
    feasible = [p for p in points if p["accuracy"] is not None and not p["reference"]]
    refs = [p for p in points if p["accuracy"] is not None and p["reference"]]
    over = [p for p in points if p["state"] == "complete" and not p["feasible"] and p[key] is not None]
    front = data["pareto"]
    ax.scatter(
        [p[key] / scale for p in feasible],
        [p["accuracy"] for p in feasible],
        s=18,
        color=SEARCHED,
        alpha=0.7,
        label=f"searched ({len(feasible)})",
    )
    if front:
        xs = [r["target"][axis["target_key"]] / scale for r in front]
        ys = [r["accuracy"] for r in front]
        ax.step(xs, ys, where="post", color=FRONT, linewidth=1.2)
        ax.scatter(xs, ys, s=46, facecolors="none", edgecolors=FRONT, linewidths=1.5, label=f"Pareto ({len(front)})")
        tuned = [(x, r["finetuned"]["accuracy"]) for x, r in zip(xs, front, strict=True) if "finetuned" in r]
        if tuned:
            ax.scatter(*zip(*tuned, strict=True), marker="*", s=70, color=FRONT, label="Pareto, fine-tuned")
    for p in refs:
        ax.scatter(p[key] / scale, p["accuracy"], marker="D", s=40, color=REFERENCE, zorder=3)
        ax.annotate(p["reference"], (p[key] / scale, p["accuracy"]), xytext=(4, -11), textcoords="offset points")
        if p["finetuned_accuracy"] is not None:
            ax.scatter(p[key] / scale, p["finetuned_accuracy"], marker="*", s=70, color=REFERENCE, zorder=3)
    if refs:
        ax.scatter([], [], marker="D", s=40, color=REFERENCE, label="references (uniform k)")
    budget = axis["budget"] / scale
    ax.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.2, label=f"budget {data['budget']}")
    if over:  # never trained: no accuracy, drawn faint along the bottom at their cost
        ax.scatter(
            [p[key] / scale for p in over],
            [0.02] * len(over),
            transform=ax.get_xaxis_transform(),
            marker="x",
            s=16,
            color=FAINT,
            alpha=0.6,
            label=f"over budget, not trained ({len(over)})",
        )
    right = max([budget, *(p[key] / scale for p in points if p[key] is not None)])
    ax.set_xlim(0, right * 1.05)  # the faint crosses do not widen the limits by themselves
    ax.set_xlabel(axis["label"])
    ax.set_ylabel(f"proxy accuracy ({', '.join(data['about']['accuracy']['splits']) or 'val'})")
    ax.set_title(f"{data['study']}: accuracy vs FLOPs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _hypervolume(data: dict[str, Any]) -> Figure | None:
    history = data["hypervolume_history"]
    if not history:
        return None
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([h["finished"] for h in history], [h["hypervolume"] for h in history], color=SEARCHED)
    ax.set_xlabel("trials finished")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the feasible trials (share of the accuracy × (1 − FLOPs/budget) box)", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _importances(data: dict[str, Any]) -> Figure | None:
    imp = data["importances"]
    shown = [(k, imp[k]["values"]) for k in ("accuracy", "flops") if imp[k]["values"]]
    if not shown:
        return None
    fig = Figure(figsize=(7.5, 0.6 + 0.28 * max(len(v) for _, v in shown)), layout="constrained")
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (key, values) in zip(axes, shown, strict=True):
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names], color=SEARCHED if key == "accuracy" else BUDGET)
        ax.set_title(f"importance for {'proxy accuracy' if key == 'accuracy' else 'target FLOPs'}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    return fig


def _configurations(data: dict[str, Any]) -> Figure | None:
    conf = data["configurations"]
    rows = conf["rows"]
    if not rows or not conf["columns"]:
        return None
    shares = [[float("nan") if s is None else s for s in r["share"]] for r in rows]
    fig = Figure(figsize=(max(4.5, 0.55 * len(conf["columns"]) + 2), 0.9 + 0.38 * len(rows)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, r in enumerate(rows):
        for j, value in enumerate(r["values"]):
            if value is not None:
                color = "white" if r["share"][j] < 0.6 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"trial {r['trial']}" for r in rows], fontsize=8)
    ax.set_title("Pareto configurations: value / largest allowed", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return fig


def _fidelity(data: dict[str, Any]) -> Figure | None:
    """Study score vs stand-alone test accuracy of the validated configurations, coloured by FLOPs."""
    fidelity = data.get("fidelity")
    if not fidelity:
        return None
    scale, unit = _unit(data)
    rows = fidelity["configurations_validated"]
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    spread = [(max(r["standalone"]) - min(r["standalone"])) / 2 if len(r["standalone"]) > 1 else 0.0 for r in rows]
    ax.errorbar(
        [r["score"] for r in rows],
        [r["standalone_mean"] for r in rows],
        yerr=spread,
        fmt="none",
        ecolor=FAINT,
        elinewidth=1,
        zorder=1,
    )
    dots = ax.scatter(
        [r["score"] for r in rows],
        [r["standalone_mean"] for r in rows],
        c=[r["flops"] / scale for r in rows],
        cmap="viridis",
        s=40,
        zorder=2,
    )
    for r in rows:
        ax.annotate(
            str(r["trial"]), (r["score"], r["standalone_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    fig.colorbar(dots, ax=ax, label=f"target executed {unit} per example")
    tau = fidelity["kendall"]
    ax.set_title(
        f"Kendall τ = {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}]; "
        f"FLOPs alone {fidelity['flops_kendall']['value']:.2f}",
        fontsize=10,
    )
    ax.set_xlabel("study score (proxy accuracy on its scoring split)")
    ax.set_ylabel("stand-alone test accuracy (mean over seeds; bar: seed range)")
    ax.grid(alpha=0.3)
    return fig
