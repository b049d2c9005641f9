from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsearch.cli import main
from tests.cifar_files import RunsCode

QUICK = ["--space", "gateconnect_cifar", "--data", "digits", "--epochs", "1", "--steps-per-epoch", "3"]


def test_train_then_eval_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--set", "fan_in=2", "--out", str(out), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["checkpoint"] == str(out)
    assert trained["values"] == {"stage1.fan_in": 2, "stage2.fan_in": 2, "stage3.fan_in": 2}
    assert 0 <= trained["val_accuracy"] <= 1 and trained["executed_flops"] > 0
    assert main(["eval", str(out), "--json", "--latency-batch", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["examples"] == 360
    assert set(report["per_class"]) == {str(c) for c in range(10)}
    assert report["network_executed_flops"] == trained["executed_flops"]
    assert report["model_flops"] > 0 and report["latency"]["batch"] == 8
    assert report["vqa_accuracy"] is None
    assert set(report["usage"]["gateconnect"])  # the learned connectivity, frozen
    assert main(["eval", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_train_starts_from_a_plain_pt_and_refuses_a_pickle_that_runs_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    torch.save({"stem.0.weight": RunsCode(marker)}, tmp_path / "evil.pt")
    assert main(["train", *QUICK, "--out", str(tmp_path / "a"), "--init", str(tmp_path / "evil.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "refused: it needs pickle code" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "a").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsearch", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", *QUICK[:-4], "--epochs", "-1", "--out", "OUT"], "epochs=-1 must be a positive integer"),
        (["train", "--space", "gateconnect_cifar", "--data", "imagenet", "--out", "OUT"], "unknown data 'imagenet'"),
        (["train", "--space", "nope", "--out", "OUT"], "unknown space 'nope'"),
        (["train", *QUICK, "--set", "k=4", "--out", "OUT"], "unknown parameter 'k'"),
        (["train", *QUICK, "--network", "huge", "--out", "OUT"], "'huge' is not one of 'proxy', 'target'"),
        (["eval", "OUT"], "not a checkpoint directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    done = _cli(*[str(out) if a == "OUT" else a for a in args])
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not out.exists()


def test_a_training_logged_to_a_file_prints_one_line_per_step_window(tmp_path: Path) -> None:
    done = _cli("train", *QUICK, "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # stderr is for an error alone
    lines = done.stdout.splitlines()
    steps = [line for line in lines if line.startswith("epoch 1 step ")]
    assert steps[0].startswith("epoch 1 step 1/3: loss ") and "images/s" in steps[0]
    assert steps[-1].startswith("epoch 1 step 3/3") and steps[-1].endswith(" left")
    assert any(line.startswith("epoch 1: train loss") for line in lines)
