"""`sparsearch validate` on a real tiny study: stand-alone trainings stored, resumed, ranked."""

from __future__ import annotations

import json

import optuna
import pytest

from sparsearch.cli import main
from sparsearch.study import ValidationSettings, run_study, run_validation
from tests.study.helpers import tiny_settings


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    url = f"sqlite:///{root}/v.db"
    run_study(tiny_settings(10**12, trials=8), storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny")
    return url


def test_validation_trains_each_chosen_configuration_per_seed_and_stores_the_figures(study) -> None:
    lines: list[str] = []
    result = run_validation(study, "tiny", ValidationSettings(configs=3, seeds=2), device="cpu", log=lines.append)
    assert len(lines) == 3 * 2  # one line per training
    assert result["configurations"] == 3 and result["seeds"] == [2]
    assert result["split"] == "test" and result["settings"]["epochs"] == 1
    for key in ("kendall", "spearman", "flops_kendall", "partial_kendall", "regret"):
        assert result[key]["low"] <= result[key]["value"] <= result[key]["high"]
    assert result["machine"]["cpu"]
    validated = {row["trial"] for row in result["configurations_validated"]}
    assert result["recommended"] in validated
    stored = optuna.load_study(study_name="tiny", storage=study).user_attrs
    assert stored["fidelity"] == json.loads(json.dumps(result))
    assert len(stored["validation"]) == 6
    for run in stored["validation"].values():
        assert 0.0 <= run["test_accuracy"] <= 1.0 and run["test_examples"] == 360  # digits' test split


def test_a_rerun_trains_only_what_is_missing(study) -> None:
    before = optuna.load_study(study_name="tiny", storage=study).user_attrs["validation"]
    lines: list[str] = []
    run_validation(study, "tiny", ValidationSettings(configs=4, seeds=2), device="cpu", log=lines.append)
    assert len(lines) == 2  # the fourth configuration, two seeds; the first three were kept
    after = optuna.load_study(study_name="tiny", storage=study).user_attrs["validation"]
    assert {k: after[k] for k in before} == before


def test_the_command_prints_the_figures_and_refuses_a_missing_study(study, tmp_path, capsys, monkeypatch) -> None:
    assert main(["validate", "tiny", "--storage", study, "--configs", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Kendall τ, score vs stand-alone" in out and "FLOPs alone" in out
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "nothing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no study 'nothing'")
    assert not (tmp_path / "studies").exists()
    assert main(["validate", "tiny", "--storage", study, "--configs", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err
