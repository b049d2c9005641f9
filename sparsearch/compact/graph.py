"""The learned connectivity of a network as a networkx graph, and the blocks nothing consumes (seed 003, §2.1).

Nodes are the stem, every branch of every GateConnect module (``"stage1.0/b3"``), every single-stream
block (``"conv2.0"``) and the head. Edges are the connections used at inference: the frozen top-K
gates of GateConnect modules, and the fixed aggregations (edge kind "sum": the mean, then the ReLU)
where branches meet a single-stream block or the head.

A block is *dead* when no path leads from it to the head: its output is computed and thrown away.
Removing a dead block can leave its own inputs without a consumer, so they die in turn;
:func:`dead_blocks` follows that cascade round by round.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from sparsearch.layers import GateConnectModule
from sparsearch.models import SparseResNeXt

__all__ = ["HEAD", "STEM", "ModuleSummary", "connectivity_graph", "dead_blocks", "module_summaries"]

STEM, HEAD = "stem", "head"


def branch_node(block: str, branch: int) -> str:
    return f"{block}/b{branch}"


def connectivity_graph(net: SparseResNeXt) -> nx.DiGraph:
    """The DiGraph of ``net``'s connections at inference.

    Node attributes: ``block`` (plan name, e.g. ``"stage1.0"``; the stem and head are their own),
    ``branch`` (index within a GateConnect module, else None), ``column`` (0 = stem, then one per block).
    Edge attribute ``kind``: ``"gate"`` (a GateConnect connection), ``"sum"`` (branches summed into a
    single-stream block or the head) or ``"chain"``.
    """
    graph = nx.DiGraph()
    graph.add_node(STEM, block=STEM, branch=None, column=0)
    producers, streams = [STEM], False
    for column, (b, module) in enumerate(zip(net.plan.blocks, net.blocks.values(), strict=True), 1):
        if isinstance(module, GateConnectModule):
            nodes = [branch_node(b.name, j) for j in range(module.cardinality)]
            for j, node in enumerate(nodes):
                graph.add_node(node, block=b.name, branch=j, column=column)
            if module.num_inputs == 1:  # every branch reads the single tensor as it is
                graph.add_edges_from((producers[0], node, {"kind": "chain"}) for node in nodes)
            else:
                for j, k in module.active_connections():
                    graph.add_edge(producers[k], nodes[j], kind="gate")
            producers, streams = nodes, True
        else:
            graph.add_node(b.name, block=b.name, branch=None, column=column)
            kind = "sum" if streams else "chain"
            graph.add_edges_from((p, b.name, {"kind": kind}) for p in producers)
            producers, streams = [b.name], False
    graph.add_node(HEAD, block=HEAD, branch=None, column=len(net.plan.blocks) + 1)
    graph.add_edges_from((p, HEAD, {"kind": "sum" if streams else "chain"}) for p in producers)
    return graph


def dead_blocks(graph: nx.DiGraph, head: str = HEAD) -> list[list[str]]:
    """The dead nodes of ``graph``, round by round: round 1 has no consumer at all; round n lost its last
    consumer in round n - 1. Their union is every node with no path to ``head``."""
    g = graph.copy()
    rounds: list[list[str]] = []
    while True:
        dead = sorted(n for n in g.nodes if n != head and g.out_degree(n) == 0)
        if not dead:
            return rounds
        rounds.append(dead)
        g.remove_nodes_from(dead)


@dataclass(frozen=True)
class ModuleSummary:
    """One GateConnect module after dead blocks are removed."""

    block: str
    branches: int
    live: tuple[int, ...]  # branch indices kept
    dead: tuple[int, ...]  # branch indices removed
    fan_in: tuple[int, ...]  # inputs read by each live branch (all of them live)

    def to_dict(self) -> dict[str, object]:
        return {
            "block": self.block,
            "branches": self.branches,
            "live": list(self.live),
            "dead": list(self.dead),
            "fan_in": list(self.fan_in),
        }


def module_summaries(graph: nx.DiGraph, dead: set[str]) -> list[ModuleSummary]:
    """Per GateConnect module: live and dead branches, and the fan-in of each live branch."""
    blocks: dict[str, list[str]] = {}
    for node, data in graph.nodes(data=True):
        if data["branch"] is not None:
            blocks.setdefault(data["block"], []).append(node)
    rows = []
    for block, nodes in sorted(blocks.items(), key=lambda item: graph.nodes[item[1][0]]["column"]):
        nodes.sort(key=lambda n: graph.nodes[n]["branch"])
        live = tuple(graph.nodes[n]["branch"] for n in nodes if n not in dead)
        gone = tuple(graph.nodes[n]["branch"] for n in nodes if n in dead)
        fan_in = tuple(graph.in_degree(n) for n in nodes if n not in dead)
        rows.append(ModuleSummary(block, len(nodes), live, gone, fan_in))
    return rows
