"""Compaction: learned connectivity -> graph -> compacted dense model, verified and exported."""

from sparsearch.compact.edits import apply_edits, expert_groups
from sparsearch.compact.graph import connectivity_graph, dead_blocks, module_summaries
from sparsearch.compact.modules import BranchModule, SelectedRouting

__all__ = [
    "BranchModule",
    "SelectedRouting",
    "apply_edits",
    "connectivity_graph",
    "dead_blocks",
    "expert_groups",
    "module_summaries",
]
