from __future__ import annotations

import json

import pytest

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


@pytest.mark.slow
def test_a_study_under_torchrun_trains_its_supernet_data_parallel_and_rank_0_runs_the_trials(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    space = write_tiny(tmp_path)
    args = ["study", "--budget", str(_budget()), "--space", str(space), "--trials", "4", "--supernets", "1"]
    args += ["--finetune-steps", "2", "--score-examples", "64", "--device", "cpu", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparsearch"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)  # rank 0 alone prints the summary
    assert out["trials"]["complete"] == 4 and out["pareto"]
    supernets = [p for p in (tmp_path / "studies" / out["study"] / "supernets").iterdir() if p.is_dir()]
    assert len(supernets) == 1 and not supernets[0].name.endswith(".resume")  # one, saved once, its state removed
    assert load_file(supernets[0] / "model.safetensors")  # a checkpoint plain torch reads
    again = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]  # resumed: the supernet is loaded, not trained again
    assert json.loads(again.stdout)["trials"]["complete"] == 4
