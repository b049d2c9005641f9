"""`python -m build` makes a wheel that installs in a fresh virtual environment (CPU torch first), prints
no setuptools warning wall, and runs: `sparsearch flops default` and a tiny study on the shipped spaces.

Slow (a build and a fresh environment's installs from the package index): `make test-slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.study.helpers import TINY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path | None = None, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_installs_in_a_fresh_environment_and_runs(tmp_path) -> None:
    import torch

    built = _run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", ROOT, cwd=tmp_path)
    assert "Deprecation" not in built.stdout + built.stderr  # no setuptools warning wall (the license is SPDX)
    (wheel,) = (tmp_path / "dist").glob("sparsearch-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    pip, bin_ = venv / "bin" / "pip", venv / "bin"
    _run(pip, "install", "--quiet", f"torch=={torch.__version__.split('+')[0]}")  # the CPU build, first
    _run(pip, "install", "--quiet", wheel)

    work = tmp_path / "work"  # not the source tree: only the installed package is there
    work.mkdir()
    flops = _run(bin_ / "sparsearch", "flops", "default", "--json", cwd=work)
    assert '"space": "default"' in flops.stdout
    shipped = _run(bin_ / "sparsearch", "spaces", cwd=work)
    assert "gateconnect_digits" in shipped.stdout
    (work / "tiny.yaml").write_text(TINY)
    options = ["--trials", "3", "--score-examples", "64", "--finetune-top", "1", "--finetune-steps", "2"]
    study = _run(bin_ / "sparsearch", "study", "--budget", "2.5MFLOPs", "--space", "tiny.yaml", *options, cwd=work)
    assert "study tiny-2.5MFLOPs: 3 complete" in study.stdout
    where = _run(bin_ / "python", "-c", "import sparsearch; print(sparsearch.__file__)", cwd=work)
    assert str(venv) in where.stdout
