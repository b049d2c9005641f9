from __future__ import annotations

import json

from sparsearch.cli import main
from sparsearch.cost import budget_text, parse_budget
from tests.study.helpers import write_tiny
from tests.study.test_study import _budget


def test_study_command_prints_the_pareto_set_and_the_report(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    space = write_tiny(tmp_path)
    args = ["study", "--budget", str(_budget()), "--space", str(space), "--trials", "4", "--supernets", "1"]
    args += ["--finetune-steps", "2", "--score-examples", "64", "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # The name carries the budget exactly (the display string rounds), so it reads back as the same int.
    assert out["study"] == f"tiny-{budget_text(out['budget_flops'])}"
    assert parse_budget(out["study"].removeprefix("tiny-")) == out["budget_flops"] == _budget()
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
