"""The connectivity graph and the dead-block cascade, on hand-built graphs and on a built network."""

from __future__ import annotations

import itertools

import networkx as nx
import torch

from sparsearch.compact.graph import HEAD, STEM, connectivity_graph, dead_blocks, module_summaries
from sparsearch.models import create_model


def _graph(edges):
    g = nx.DiGraph()
    g.add_edges_from(edges)
    return g


def _non_ancestors(g):
    return set(g.nodes) - nx.ancestors(g, HEAD) - {HEAD}


def test_cascade_follows_removals_round_by_round():
    # a1 feeds only b1, which feeds only c1, which nothing reads: three rounds, from the end backwards.
    g = _graph(
        [
            (STEM, "a0"), (STEM, "a1"), ("a0", "b0"), ("a1", "b1"), ("a0", "b1"),
            ("b0", "c0"), ("b1", "c1"), ("c0", HEAD),
        ]
    )  # fmt: skip
    rounds = dead_blocks(g)
    assert rounds == [["c1"], ["b1"], ["a1"]]
    assert set().union(*rounds) == _non_ancestors(g)


def test_a_block_with_one_live_consumer_lives():
    g = _graph([(STEM, "a0"), ("a0", "b0"), ("a0", "b1"), ("b0", HEAD)])
    assert dead_blocks(g) == [["b1"]]  # a0 keeps b0 and stays


def test_nothing_dead_in_a_chain_and_everything_dead_without_a_head_path():
    assert dead_blocks(_graph([(STEM, "a"), ("a", "b"), ("b", HEAD)])) == []
    g = _graph([(STEM, "a"), ("a", "b")])
    g.add_node(HEAD)
    assert set().union(*dead_blocks(g)) == {STEM, "a", "b"}


def test_random_graphs_agree_with_reachability():
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        layers = [[f"l{i}b{j}" for j in range(4)] for i in range(4)]
        g = nx.DiGraph()
        g.add_node(HEAD)
        g.add_edges_from((STEM, n) for n in layers[0])
        for prev, nxt in itertools.pairwise(layers):
            for n in nxt:
                k = int(torch.randint(len(prev), (1,), generator=gen))
                g.add_edge(prev[k], n)
        g.add_edges_from((n, HEAD) for n in layers[-1])
        assert set().union(*dead_blocks(g)) == _non_ancestors(g)


def test_graph_of_a_gateconnect_network():
    net = create_model("gateconnect_cifar", depth=20, num_classes=10, fan_in=1, input_size=16)
    for m in net.modules():
        if hasattr(m, "freeze"):
            with torch.no_grad():
                m.gates.fill_(0.1)
                m.gates[:, 0] = 1.0  # every branch reads input 0 only
            m.freeze()
    g = connectivity_graph(net)
    # stem, 3 stages x 2 modules x 8 branches, head
    assert g.number_of_nodes() == 1 + 48 + 1
    assert all(g.in_degree(n) == 1 for n in g.nodes if n not in (STEM, HEAD))
    dead = {n for r in dead_blocks(g) for n in r}
    rows = {m.block: m for m in module_summaries(g, dead)}
    # Only branch 0 of a module feeds the next module, so all but branch 0 die, except in the last
    # module, whose branches the head sums.
    for name, row in rows.items():
        if name == "stage3.1":
            assert row.live == tuple(range(8)) and row.dead == ()
        else:
            assert row.live == (0,) and row.dead == tuple(range(1, 8))
        assert set(row.fan_in) == {1}
