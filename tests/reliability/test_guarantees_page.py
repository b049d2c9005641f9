"""docs/guarantees.md names the tests that prove each promise: they must exist, and every test of
tests/reliability/ must be named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guarantees.md"
CITED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_cited_test_exists() -> None:
    cited = CITED.findall(PAGE.read_text())
    assert len(cited) > 30
    missing = [f"{f}::{name}" for f, name in cited if not (ROOT / f).is_file() or name not in _tests(ROOT / f)]
    assert missing == []


def test_every_reliability_test_is_cited() -> None:
    cited = set(CITED.findall(PAGE.read_text()))
    files = sorted((ROOT / "tests" / "reliability").glob("test_*.py"))
    uncited = [
        f"{f.relative_to(ROOT)}::{name}"
        for f in files
        if f.name != Path(__file__).name
        for name in sorted(_tests(f))
        if (str(f.relative_to(ROOT)), name) not in cited
    ]
    assert uncited == []
