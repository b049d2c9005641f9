"""Search spaces shipped with sparsearch (YAML files; see sparsearch.spaces)."""
