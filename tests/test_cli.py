from __future__ import annotations

import subprocess
import sys

import pytest

import sparsearch
from sparsearch.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsearch", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help_through_the_installed_entry_point() -> None:
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"sparsearch {sparsearch.__version__}"
    assert sparsearch.__version__ == "0.1.0"
    done = _run("--help")
    assert done.returncode == 0
    assert "Usage: sparsearch" in done.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [(["bogus"], "error: No such command 'bogus'."), (["--bogus"], "error: No such option: --bogus")],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert "Traceback" not in done.stderr


def test_routings_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routings"]) == 0
    assert capsys.readouterr().out.split() == ["constant", "noisy_topk", "relu_l1", "sigmoid", "softmax"]


def test_library_errors_become_one_line(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from sparsearch import cli

    def broken() -> None:
        raise sparsearch.SparsearchError("space 'nope' not found; known: default")

    monkeypatch.setattr("sparsearch.layers.routing_names", broken)
    assert cli.main(["routings"]) == 2
    assert capsys.readouterr().err == "error: space 'nope' not found; known: default\n"
