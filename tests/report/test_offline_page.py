"""report.html draws its plots in a real headless Chromium with the network off.

The browser runs in a network namespace of its own (``unshare -n``: no interface but loopback) when the
machine allows one, and is otherwise told to resolve no host and to use a proxy that is not there. The
same page pointing at plotly's CDN, opened the same way, draws nothing: the network really is off.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sparsearch.report.interactive import PLOTLY_JS, write_interactive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # when no namespace: no name resolves...
    "--proxy-server=http://127.0.0.1:9",  # ...and nothing connects
]


def _offline_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def open_offline(page: Path, profile: Path, *extra: str) -> str:
    """The page's DOM after its scripts ran (up to 20 s of page time), in headless Chromium without network."""
    command = [*_offline_prefix(), CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra]
    command += ["--dump-dom", "--virtual-time-budget=20000", page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_report_page_draws_every_plot_offline(tmp_path) -> None:
    data = json.loads((ROOT / "docs/studies/default-50GFLOPs/report.json").read_text(encoding="utf-8"))
    write_interactive(data, tmp_path)
    dom = open_offline(tmp_path / "report.html", tmp_path / "profile")
    for name in ("pareto", "hypervolume", "importances", "configurations"):  # plotly marks a div it has drawn
        assert f'<div id="{name}" class="plotly-graph-div js-plotly-plot"' in dom, name
    assert dom.count('class="main-svg"') >= 4

    cdn = tmp_path / "cdn"
    cdn.mkdir()
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    (cdn / "report.html").write_text(
        html.replace(f'src="{PLOTLY_JS}"', 'src="https://cdn.plot.ly/plotly-3.0.1.min.js"')
    )
    assert "js-plotly-plot" not in open_offline(cdn / "report.html", tmp_path / "profile2")
