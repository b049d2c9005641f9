"""The shipped spaces (``search_spaces/*.yaml``, installed as ``sparsearch.search_spaces``) and lookup
of a space by name or by path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sparsearch.errors import ConfigError
from sparsearch.spaces.schema import load_space, parse_space
from sparsearch.spaces.space import Space

__all__ = ["DEFAULT_SPACE", "get_space", "space_names"]

DEFAULT_SPACE = "default"


def _shipped() -> dict[str, resources.abc.Traversable]:
    folder = resources.files("sparsearch.search_spaces")
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


def space_names() -> list[str]:
    """Names of the shipped spaces, sorted."""
    return sorted(_shipped())


def get_space(name_or_path: str) -> Space:
    """A shipped space by name, or a space file by path (anything ending in .yaml/.yml or containing /)."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return load_space(Path(name_or_path))
    shipped = _shipped()
    if name_or_path not in shipped:
        raise ConfigError(
            f"unknown space {name_or_path!r}; known: {', '.join(sorted(shipped))} (or a path to a .yaml file)"
        )
    entry = shipped[name_or_path]
    return parse_space(entry.read_text(encoding="utf-8"), f"search_spaces/{entry.name}")
