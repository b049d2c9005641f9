"""`make docs` builds: mkdocs in strict mode (broken links, pages missing from the navigation and
unknown anchors fail the build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "studies" / "default-50GFLOPs" / "pareto.png").is_file()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
