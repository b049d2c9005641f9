"""The same study command with the same seed gives the same study on one machine (timings aside)."""

from __future__ import annotations

import json

import optuna

from sparsearch.cli import main
from tests.study.helpers import write_tiny

TIMINGS = ("seconds", "latency_ms", "supernet_train_seconds", "train_seconds", "target_latency")


def _strip(value):
    """``value`` without wall-clock figures, which differ from run to run."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _run(directory, monkeypatch, capsys) -> dict:
    monkeypatch.chdir(directory)
    space = write_tiny(directory)
    args = ["study", "--space", str(space), "--budget", "20MFLOPs", "--trials", "8", "--supernets", "1"]
    args += ["--score-examples", "128", "--finetune-steps", "2", "--finetune-top", "2", "--seed", "3"]
    assert main([*args, "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    study = optuna.load_study(
        study_name=summary["study"], storage=f"sqlite:///{directory}/studies/{summary['study']}.db"
    )
    trials = [(t.number, t.params, t.values, _strip(t.user_attrs)) for t in study.trials]
    return {"pareto": _strip(summary["pareto"]), "references": _strip(summary["references"]), "trials": trials}


def test_the_same_command_and_seed_give_the_same_trials_and_pareto_set(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _run(tmp_path / "a", monkeypatch, capsys)
    second = _run(tmp_path / "b", monkeypatch, capsys)
    assert first["trials"] == second["trials"]
    assert first["pareto"] == second["pareto"] and first["references"] == second["references"]
    assert len(first["trials"]) == 8 and first["pareto"]
