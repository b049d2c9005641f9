"""Compaction: learned connectivity -> graph -> compacted dense model, verified and exported."""

from sparsearch.compact.graph import connectivity_graph, dead_blocks, module_summaries

__all__ = [
    "connectivity_graph",
    "dead_blocks",
    "module_summaries",
]
