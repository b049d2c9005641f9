"""Every command shown in README.md and docs/ runs as shown.

Commands are the lines of plain or shell code blocks that start with ``sparsearch``, ``make`` or
``python benchmarks/`` / ``python experiments/``. Usage synopses (``[OPTIONS]``, ``[--x]``) are skipped.
Short commands run, in the page's order, in a fresh directory per page (so ``train`` then ``eval`` of
its output works); a trailing ``# error: ...`` comment means the command must fail with that one-line
error and exit code 2. Long commands (studies, workers, validations, easy-VQA or multi-epoch training,
benchmarks, make targets) are checked without running: their options must parse, their scripts and
targets must exist; a trailing ``# quick`` comment runs one anyway (a tiny study in a guide).

The files of ``docs/examples/`` are copied into each page's directory first, and ``python X.py`` runs
there when X.py is one of them (the guide's own network and its space).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
SHELL = ("", "bash", "sh", "shell", "console")
EXAMPLES = ROOT / "docs" / "examples"
STARTS = ("sparsearch ", "make ", "python ")
# Prefixes of commands that take minutes (or need a server): parsed, not run.
LONG = (
    "make ",
    "sparsearch study",
    "sparsearch worker",
    "sparsearch validate",
    "sparsearch report",
    "sparsearch latency-table",
    "python ",
)
VQA_SPACES = ("default", "clevr", "sort_of_clevr", "experiments/sort_of_clevr_mlp.yaml")  # minutes per training
MAX_EPOCHS = 2  # digits trainings of more epochs (or the space's default) are parsed, not run


def _shell_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks that are plain or shell (not python, yaml ...)."""
    lines, language = [], None  # language is None outside a block
    for line in text.splitlines():
        fence = line.strip().startswith("```")
        if fence and language is None:
            language = line.strip()[3:].strip()
        elif fence:
            language = None
        elif language in SHELL:
            lines.append(line.strip())
    return lines


def _commands(page: Path) -> list[tuple[str, str | None]]:
    """(command, expected error or None) for every command line of the page's code blocks."""
    found = []
    for line in _shell_lines(page.read_text(encoding="utf-8")):
        if not line.startswith(STARTS) or "[OPTIONS]" in line or "[--" in line:
            continue
        if True:
            command, _, comment = line.partition("  #")
            comment = comment.strip()
            expected = comment.removeprefix("error:").strip() if comment.startswith("error:") else None
            expected = QUICK if comment == "quick" else expected
            found.append((command.strip(), expected))
    return found


QUICK = object()  # the `# quick` marker: run although long


def _example_script(command: str) -> bool:
    args = shlex.split(command)
    return args[0] == "python" and len(args) > 1 and (EXAMPLES / args[1]).is_file()


def _is_long(command: str, skipped: set[str] = frozenset()) -> bool:
    """Long: a long kind of command, or one that reads what a skipped command would have written."""
    args = shlex.split(command)
    if any(a in skipped for a in args):
        return True
    if _example_script(command):
        return False
    if command.startswith(LONG):
        return True
    if command.startswith("sparsearch train"):
        space = args[args.index("--space") + 1] if "--space" in args else "default"
        epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else None
        return space in VQA_SPACES or epochs is None or epochs > MAX_EPOCHS
    return False


PAGES_WITH_COMMANDS = [p for p in PAGES if _commands(p)]


def test_the_docs_show_commands() -> None:
    assert sum(len(_commands(p)) for p in PAGES) >= 20


def _parse(command: str) -> None:
    """The command's options parse (nothing runs)."""
    args = shlex.split(command)
    if args[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
        assert all(t in targets for t in args[1:]), f"{command}: no such make target"
        return
    if args[0] == "python":
        assert (ROOT / args[1]).is_file(), f"{command}: no such script"
        done = subprocess.run([sys.executable, *args[1:2], "--help"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        for option in (a for a in args[2:] if a.startswith("--")):
            assert option in done.stdout, f"{command}: {option} is not an option of {args[1]}"
        return
    from sparsearch.cli import app

    while args[1].startswith("--"):  # options before the command (--factory takes a value)
        del args[1 : 3 if args[1] == "--factory" else 2]
    group = typer.main.get_command(app)
    ctx = group.make_context("sparsearch", args[1:2])
    sub = group.get_command(ctx, args[1])
    assert sub is not None, f"{command}: no such command"
    sub.make_context(args[1], args[2:], parent=ctx)  # raises on an unknown option or a bad value


# Pages whose runnable commands take most of a minute on 2 cores (each trains or compacts networks):
# they run in `make test-slow` (CI runs both tiers), which keeps `make test` well under 15 minutes.
SLOW_PAGES = ("README.md", "docs/quickstart.md", "docs/own-network.md", "docs/compaction.md")


def _page_param(page: Path):
    name = str(page.relative_to(ROOT))
    return pytest.param(page, id=name, marks=[pytest.mark.slow] if name in SLOW_PAGES else [])


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES_WITH_COMMANDS])
def test_page_commands_run(page: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    skipped: set[str] = set()  # outputs of the commands that were only parsed
    for example in EXAMPLES.iterdir() if EXAMPLES.is_dir() else ():
        if example.is_file():
            shutil.copy(example, tmp_path / example.name)
    for command, expected in _commands(page):
        quick = expected is QUICK
        expected = None if quick else expected
        if not quick and _is_long(command, skipped):
            _parse(command)
            args = shlex.split(command)
            if "--out" in args:
                skipped.add(args[args.index("--out") + 1])
            continue
        args = shlex.split(command)
        program = (
            [sys.executable, *args[1:]] if args[0] == "python" else [sys.executable, "-m", "sparsearch", *args[1:]]
        )
        done = subprocess.run(
            program,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=600,
        )
        if expected is None:
            assert done.returncode == 0, f"{page.name}: `{command}` failed:\n{done.stderr[-2000:]}"
        else:
            err = done.stderr.strip()
            assert done.returncode == 2, f"{page.name}: `{command}` should fail with exit 2"
            assert err.startswith("error: ") and "\n" not in err, err
            for part in expected.split("..."):
                assert part.strip() in err, f"{page.name}: `{command}`: {err!r} lacks {part.strip()!r}"
