"""Study reports (``sparsearch report``): the Pareto front and what explains it, as a directory of
``index.md``, PNG figures, an interactive ``report.html`` and ``report.json``.

The directory is written beside its destination and swapped in whole, so a report is either the
previous one or the new one, never half of each; the same study gives the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sparsearch.errors import ConfigError, WriteError
from sparsearch.report.data import FORMAT, load_report_data, report_data
from sparsearch.report.figures import draw_figures
from sparsearch.report.interactive import interactive_html
from sparsearch.report.page import markdown_page, reproduce_commands
from sparsearch.study.settings import StudySettings
from sparsearch.train.checkpoint import move_into_place

__all__ = ["FORMAT", "load_report_data", "report_data", "write_report"]


def _is_report(path: Path) -> bool:
    try:
        return json.loads((path / "report.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_report(data: dict[str, Any], out: str | Path) -> Path:
    """Write the report of ``data`` (from :func:`load_report_data`) to the directory ``out``.

    ``out`` must not exist, be empty, or hold a previous report (which is replaced); anything else is
    refused, so a mistyped ``--out`` never deletes a directory of other files. Returns ``out/index.md``.
    """
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or _is_report(out))):
        raise ConfigError(f"{out} exists and is not a sparsearch report; refusing to replace it")
    settings = StudySettings.from_dict({**data["settings"], "space_text": ""})
    commands = reproduce_commands(data, settings, out.as_posix())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a report is an ordinary directory
        (tmp / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        draw_figures(data, tmp)
        (tmp / "report.html").write_text(interactive_html(data), encoding="utf-8")
        (tmp / "index.md").write_text(markdown_page(data, commands), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        move_into_place(tmp, out)
    except OSError as err:  # a full disk, a read-only directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError.of("report", out, err, existed=out.exists()) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.md"
