"""Resumable training: a run killed with SIGTERM at a random step and resumed ends with the same weights,
bit for bit, as a run never interrupted (CPU, deterministic kernels). Real processes, a real signal."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsearch.cli import main

RUN = [
    "train",
    "--space",
    "gateconnect_digits",
    "--data",
    "digits",
    "--set",
    "stage1.k=3",
    "--set",
    "stage1.routing=softmax",
    "--set",
    "fan_in=2",
    "--epochs",
    "2",
    "--steps-per-epoch",
    "8",
    "--device",
    "cpu",
]


def _sha(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sparsearch", *args], env=env, stderr=subprocess.PIPE, text=True)


def _saved_step(state: Path) -> int:
    try:
        return json.loads((state / "state.json").read_text())["step_global"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_run_killed_at_a_random_step_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = _cli(*RUN, "--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    kill_after = random.Random().randint(2, 13)  # any step but the last few (16 in all)
    out = tmp_path / "cut"
    run = _cli(*RUN, "--out", str(out), "--save-every", "1")
    deadline = time.monotonic() + 300
    while _saved_step(out.with_name("cut.resume")) < kill_after and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)
    code = run.wait(timeout=60)
    if code == 0:
        pytest.skip("the run finished before the signal arrived")
    assert code == 143 and "terminated (SIGTERM)" in run.stderr.read()
    assert not (out / "model.safetensors").exists() and _saved_step(out.with_name("cut.resume")) >= kill_after
    resumed = _cli(*RUN, "--out", str(out), "--save-every", "1", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _sha(out) == _sha(tmp_path / "whole")
    assert not out.with_name("cut.resume").exists()  # a finished run leaves no state behind


def test_resuming_another_runs_state_or_none_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out), "--resume"]) == 2
    assert "no resumable state to resume from" in capsys.readouterr().err
    quick = [a if a != "8" else "3" for a in RUN]
    state = out.with_name("run.resume")
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"format": "sparsearch-resume", "format_version": 1, "run": {}}))
    assert main([*quick, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "saved by another run" in err and err.count("\n") == 1
