from __future__ import annotations

import json

import pytest

from sparsearch.cli import main
from tests.study.helpers import write_tiny
from tests.study.test_study import _budget


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "-1"], "error: budget '-1' not understood"),
        (["--budget", "abc"], "error: budget 'abc' not understood"),
        (["--budget", "50GB"], "error: budget '50GB' not understood"),
        (["--budget", "1e400"], "error: budget '1e400' must be a positive, finite amount"),
        (["--budget", "50GFLOPs", "--trials", "0"], "error: trials=0 must be a positive integer"),
        (["--budget", "50GFLOPs", "--epochs", "-2"], "error: epochs=-2 must be a positive integer"),
        (["--budget", "50GFLOPs", "--sampler", "cmaes"], "error: sampler='cmaes'; allowed: tpe, nsga2, gp, random"),
        (["--budget", "50GFLOPs", "--eval", "guess"], "error: eval='guess'; allowed: supernet, train"),
        (["--budget", "50GFLOPs", "--space", "nope"], "error: unknown space 'nope'"),
        (["--budget", "50GFLOPs", "--timeout", "0"], "error: --timeout 0.0: give a positive number of seconds"),
        (["--budget", "50GFLOPs", "--storage", "studies.db"], "error: storage 'studies.db' is not a URL"),
        (
            ["--budget", "50GFLOPs", "--space", "condconv_mobilenet_v1"],
            "error: space condconv_mobilenet_v1 searches no k or fan-in",
        ),
        ([], "error: Missing option '--budget'"),
    ],
)
def test_bad_study_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["study", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").rglob("*.db"))


def test_study_command_prints_the_pareto_set_and_the_report(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    space = write_tiny(tmp_path)
    args = ["study", "--budget", str(_budget()), "--space", str(space), "--trials", "4", "--supernets", "1"]
    args += ["--finetune-steps", "2", "--score-examples", "64", "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["study"] == f"tiny-{out['budget'].replace(' ', '')}"
    assert out["trials"]["complete"] == 4 and out["pareto"]
    assert (tmp_path / "studies" / f"{out['study']}.db").exists()
    assert out["report"] == f"studies/{out['study']}/pareto.md"
    # The same command again resumes the finished study and prints the table.
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Pareto set" in printed and f"report: studies/{out['study']}/pareto.md" in printed


def test_worker_for_a_missing_study_is_refused(capsys, tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/none.db"
    assert main(["worker", "--storage", url, "--study-name", "ghost"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no study named 'ghost' in {url}")
