"""The shipped spaces (``search_spaces/*.yaml``, installed as ``sparsearch.search_spaces``) and lookup
of a space by name or by path."""

from __future__ import annotations

from importlib import resources

from sparsearch.config import is_trusted
from sparsearch.errors import ConfigError
from sparsearch.spaces.schema import parse_space, read_space_text
from sparsearch.spaces.space import Space

__all__ = ["DEFAULT_SPACE", "get_space", "get_space_and_text", "space_names", "stored_space"]

DEFAULT_SPACE = "default"
_PARSED: dict[tuple[str, str], Space] = {}  # (YAML text, source) -> the space this process parsed from it
_REMEMBERED = 8  # spaces kept (a command uses one; a test process many)


def _remember(space: Space, text: str) -> Space:
    _PARSED[(text, space.source)] = space
    while len(_PARSED) > _REMEMBERED:
        _PARSED.pop(next(iter(_PARSED)))
    return space


def stored_space(text: str, source: str) -> Space:
    """The space a study stores (its YAML and source): the one this process already parsed from the same
    text, else parsed now. A command parses its space once: a factory's model is imported and measured
    once (spaces are immutable, so sharing one is safe)."""
    space = _PARSED.get((text, source))
    if space is not None and (space.factory is None or is_trusted(space.factory)):
        return space  # a factory's trust is asked again: what this process parsed, it may no longer trust
    return _remember(parse_space(text, source), text)


def _shipped() -> dict[str, resources.abc.Traversable]:
    folder = resources.files("sparsearch.search_spaces")
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


def space_names() -> list[str]:
    """Names of the shipped spaces, sorted."""
    return sorted(_shipped())


def get_space(name_or_path: str) -> Space:
    """A shipped space by name, or a space file by path (anything ending in .yaml/.yml or containing /)."""
    return get_space_and_text(name_or_path)[0]


def get_space_and_text(name_or_path: str) -> tuple[Space, str]:
    """:func:`get_space` and the YAML text it was parsed from (a study stores it for its workers)."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        text = read_space_text(name_or_path)  # read once, within the size cap
        return _remember(parse_space(text, name_or_path, trust=True), text), text  # the user named this file
    shipped = _shipped()
    if name_or_path not in shipped:
        raise ConfigError(
            f"unknown space {name_or_path!r}; known: {', '.join(sorted(shipped))} (or a path to a .yaml file)"
        )
    entry = shipped[name_or_path]
    text = entry.read_text(encoding="utf-8")
    return _remember(parse_space(text, f"search_spaces/{entry.name}"), text), text
