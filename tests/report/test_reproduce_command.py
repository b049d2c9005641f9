"""The report's reproduce command, run as printed in a fresh directory holding the user's files, makes the
same study: a space file by its path (with a space in it), a data plug-in, an exact budget."""

from __future__ import annotations

import shlex
import shutil
import sys

import optuna
import pytest

from sparsearch.cli import main
from tests.study.helpers import TINY

pytestmark = pytest.mark.integration

PLUGIN = '''
import torch

def make(input_size, seed):
    """Four classes: the class is the quadrant holding a bright square."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(240) % 4
    images = torch.rand(240, 3, input_size, input_size, generator=g) * 0.3
    h = input_size // 2
    for i, c in enumerate(labels.tolist()):
        top, left = (c // 2) * h, (c % 2) * h
        images[i, :, top : top + h // 2, left : left + h // 2] += 0.7
    return (images[:160], labels[:160]), (images[160:], labels[160:])
'''


def _trials(directory, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{directory}/studies/{name}.db")
    return [(t.number, t.params, t.values, t.user_attrs.get("feasible")) for t in study.trials]


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_the_printed_reproduce_command_remakes_the_same_study(tmp_path, monkeypatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        (directory / "my spaces").mkdir(parents=True)
        (directory / "my spaces" / "mine.yaml").write_text(TINY.replace("name: tiny", "name: mine"))
        (directory / "quadrants.py").write_text(PLUGIN)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the plug-in's directory is not left on the path
    monkeypatch.chdir(first)
    options = ["--trials", "4", "--sampler", "random", "--score-examples", "64", "--finetune-top", "1"]
    study = ["study", "--budget", "2.345MFLOPs", "--space", "my spaces/mine.yaml", "--data", "quadrants:make"]
    assert main([*study, *options, "--finetune-steps", "2"]) == 0
    name = "mine-2.345MFLOPs"
    assert main(["report", name, "--out", "report"]) == 0
    page = (first / "report" / "index.md").read_text(encoding="utf-8")
    (command,) = [line for line in page.splitlines() if line.startswith("sparsearch study ")]
    assert "--budget 2.345MFLOPs" in command and "--space 'my spaces/mine.yaml'" in command
    assert "--data quadrants:make" in command

    sys.modules.pop("quadrants", None)  # imported again, from the second directory
    monkeypatch.chdir(second)
    args = shlex.split(command)
    assert args[0] == "sparsearch"
    assert main(args[1:]) == 0
    assert _trials(second, name) == _trials(first, name)
    shutil.rmtree(first / "studies")  # the copies are independent
    sys.modules.pop("quadrants", None)
