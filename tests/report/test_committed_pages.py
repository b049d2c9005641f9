"""The committed study pages under docs/studies/ are outputs of the current code: re-rendered from
their own report.json, the page and the interactive HTML are identical, and every figure is there.

(The studies' databases are not committed; `make study` and the command on each page remake them.)
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.offline
import pytest

from sparsearch.cost.budget import Budget
from sparsearch.report import FORMAT
from sparsearch.report.figures import figures_of
from sparsearch.report.interactive import PLOTLY_JS, interactive_html
from sparsearch.report.page import markdown_page, reproduce_commands
from sparsearch.study.settings import StudySettings

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs" / "studies").glob("*/report.json"))


def test_the_two_studies_are_committed() -> None:
    names = {p.parent.name for p in PAGES}
    assert {"default-50GFLOPs", "gateconnect_digits-300MFLOPs"} <= names


@pytest.mark.parametrize("path", PAGES, ids=[p.parent.name for p in PAGES])
def test_committed_page_is_what_the_code_renders(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT
    out = path.parent
    settings = StudySettings.from_dict({**data["settings"], "space_text": ""})
    commands = reproduce_commands(data, settings, out.relative_to(ROOT).as_posix())
    assert (out / "index.md").read_text(encoding="utf-8") == markdown_page(data, commands)
    assert (out / "report.html").read_text(encoding="utf-8") == interactive_html(data)
    assert (out / PLOTLY_JS).read_text(encoding="utf-8") == plotly.offline.get_plotlyjs()  # the page works offline
    for name in figures_of(data):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The reproduce command is a real command line for this study.
    assert commands[0].startswith("sparsearch study --budget ") and data["study"] in commands[1]


def test_the_reproduce_command_names_a_space_file_as_given_and_the_budget_exactly() -> None:
    from sparsearch.study import StudySettings

    settings = StudySettings(
        space="mine",
        space_text="",
        space_source="my spaces/mine.yaml",
        budget=Budget.flops(12_340_000_000),
        data="pkg.m:make",
    )
    data = {"study": "mine-12.34GFLOPs", "about": {"target": {"factory": "pkg.models:make"}}}
    study, report = reproduce_commands(data, settings, "out")
    assert study == "sparsearch study --budget 12.34GFLOPs --space 'my spaces/mine.yaml' --data pkg.m:make"
    assert report == "sparsearch --factory pkg.models:make report mine-12.34GFLOPs --out out"
    shipped = StudySettings(
        space="tiny", space_text="", space_source="search_spaces/tiny.yaml", budget=Budget.flops(10**9)
    )
    assert (
        reproduce_commands({"study": "tiny-1GFLOPs"}, shipped, "o")[0]
        == "sparsearch study --budget 1GFLOPs --space tiny"
    )
