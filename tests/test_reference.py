"""The generated reference pages are current: the committed docs/reference/*.md equal what the CLI and
the schema generate now (`make docs` regenerates them)."""

from __future__ import annotations

from pathlib import Path

from sparsearch.reference import cli_reference, space_reference
from sparsearch.spaces.schema import _KNOB, _PROXY, _TOP, FIELDS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference"


def test_committed_reference_pages_are_current() -> None:
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == cli_reference(), "run: make docs"
    assert (DOCS / "space.md").read_text(encoding="utf-8") == space_reference(), "run: make docs"


def test_every_command_and_option_is_documented() -> None:
    import typer

    from sparsearch.cli import app

    text = cli_reference()
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="sparsearch")
    for name in group.list_commands(ctx):
        assert f"## `sparsearch {name}`" in text
        for param in group.get_command(ctx, name).params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert f"`{opt}" in text, f"{name} {opt}"


def test_the_validator_accepts_exactly_the_documented_keys() -> None:
    documented = {f.key for f in FIELDS}
    assert {k for k in documented if "." not in k} == _TOP
    assert {k.split(".", 1)[1] for k in documented if k.startswith("proxy.")} == _PROXY
    assert {k.rsplit(".", 1)[1] for k in documented if k.startswith("knobs.<knob>.")} == _KNOB
    text = space_reference()
    assert all(f"`{f.key}`" in text for f in FIELDS)
