"""A picture of the learned connectivity, like seed 003's Fig. 3: one column per module, one dot per
branch, a line per active connection; dead branches (and their connections) drawn faint with a cross."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from sparsearch.compact.graph import HEAD, STEM
from sparsearch.safe_io import atomic_file

__all__ = ["draw_connectivity"]


def _positions(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    columns: dict[int, list[str]] = {}
    for node, data in graph.nodes(data=True):
        columns.setdefault(data["column"], []).append(node)
    pos = {}
    for column, nodes in columns.items():
        nodes.sort(key=lambda n: graph.nodes[n]["branch"] or 0)
        middle = (len(nodes) - 1) / 2
        for i, node in enumerate(nodes):
            pos[node] = (float(column), middle - i)
    return pos


def draw_connectivity(graph: nx.DiGraph, dead: set[str], path: str | Path, title: str = "") -> Path:
    """Write the picture of ``graph`` to ``path`` (PNG), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _positions(graph)
    columns = max(data["column"] for _, data in graph.nodes(data=True)) + 1
    rows = max(abs(y) for _, y in pos.values()) * 2 + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * columns + 1), max(3.0, 0.35 * rows + 1.5)), dpi=120)
    for u, v in graph.edges:
        gone = u in dead or v in dead
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.plot(
            [x0, x1],
            [y0, y1],
            color="#d62728" if gone else "#1f4e79",
            alpha=0.25 if gone else 0.7,
            linestyle="--" if gone else "-",
            linewidth=0.8,
            zorder=1,
        )
    live = [n for n in graph.nodes if n not in dead]
    ax.scatter([pos[n][0] for n in live], [pos[n][1] for n in live], s=28, color="#1f4e79", zorder=2, label="live")
    if dead:
        ax.scatter(
            [pos[n][0] for n in dead],
            [pos[n][1] for n in dead],
            s=40,
            marker="x",
            color="#d62728",
            zorder=2,
            label="dead",
        )
    ticks, labels = [], []
    for node, data in graph.nodes(data=True):
        if data["branch"] in (None, 0):
            ticks.append(data["column"])
            labels.append(data["block"] if node not in (STEM, HEAD) else node)
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_title(title or "learned connectivity (dead branches crossed)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_file(path, "picture") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path
