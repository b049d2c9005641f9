"""Search spaces: the YAML schema, shipped spaces, and mapping knob values to configurations."""

from sparsearch.spaces.registry import DEFAULT_SPACE, get_space, space_names
from sparsearch.spaces.schema import load_space, parse_space
from sparsearch.spaces.space import Knob, Proxy, Space

__all__ = ["DEFAULT_SPACE", "Knob", "Proxy", "Space", "get_space", "load_space", "parse_space", "space_names"]
