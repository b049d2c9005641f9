"""JSON read strictly: a key written twice in one object is an error, not "the last one wins".

``parse_json(raw)`` is ``json.loads`` but for that: a duplicate key raises ``json.JSONDecodeError`` naming the key
and the line of its first writing, positioned at its second (so the message ends with that line and
column, as every JSON error does), and the callers that turn JSON errors into one-line input errors need
nothing new.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["parse_json"]


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def parse_json(raw: str | bytes) -> Any:
    """``json.loads(raw)``, refusing a key written twice in one object (see the module docstring)."""
    try:
        return json.loads(raw, object_pairs_hook=_pairs)
    except _Duplicate as dup:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        found = [m.start() for m in re.finditer(re.escape(json.dumps(dup.key)) + r"\s*:", text)]
        first = text.count("\n", 0, found[0]) + 1 if found else None
        where = f", first at line {first}" if first is not None and len(found) > 1 else ""
        position = found[1] if len(found) > 1 else 0
        raise json.JSONDecodeError(f"key {dup.key!r} written twice in one object{where}", text, position) from None
