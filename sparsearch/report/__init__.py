"""Study reports (``sparsearch report``): the Pareto front and what explains it, as a directory of
``index.md``, PNG figures, an interactive ``report.html`` (with the ``plotly.min.js`` it loads, so it
works offline) and ``report.json``.

The directory is written beside its destination and swapped in whole, so a report is either the
previous one or the new one, never half of each; the same study gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsearch.report.data import FORMAT, load_report_data, report_data
from sparsearch.report.figures import draw_figures
from sparsearch.report.interactive import write_interactive
from sparsearch.report.page import markdown_page, reproduce_commands
from sparsearch.safe_io import atomic_dir, refuse_foreign
from sparsearch.study.settings import StudySettings

__all__ = ["FORMAT", "load_report_data", "report_data", "write_report"]


def _is_report(path: Path) -> bool:
    if not (path / "report.json").is_file():  # a FIFO in its place would block the read
        return False
    try:
        return json.loads((path / "report.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_report(data: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write the report of ``data`` (from :func:`load_report_data`) to the directory ``out`` (default:
    ``studies/<study>/report``).

    ``out`` must not exist, be empty, or hold a previous report (which is replaced); anything else is
    refused, so a mistyped ``--out`` never deletes a directory of other files. Returns ``out/index.md``.
    """
    out = Path(out) if out is not None else Path("studies") / data["study"] / "report"
    refuse_foreign(out, _is_report, "a sparsearch report")
    settings = StudySettings.from_dict({**data["settings"], "space_text": ""})
    commands = reproduce_commands(data, settings, out.as_posix())
    with atomic_dir(out, "report") as tmp:
        (tmp / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        draw_figures(data, tmp)
        write_interactive(data, tmp)
        (tmp / "index.md").write_text(markdown_page(data, commands), encoding="utf-8")
    return out / "index.md"
