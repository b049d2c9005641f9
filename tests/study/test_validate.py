"""`sparsearch validate` on a real tiny study: stand-alone trainings stored, resumed, ranked."""

from __future__ import annotations

import json

import optuna
import pytest

from sparsearch.cli import main
from sparsearch.study import ValidationSettings, run_study, run_validation
from tests.study.helpers import tiny_settings


def _runs(study: optuna.Study) -> dict:
    return {k: v for k, v in study.user_attrs.items() if k.startswith("validation:")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    url = f"sqlite:///{root}/v.db"
    run_study(tiny_settings(10**12, trials=8), storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny")
    return url


def test_validation_trains_each_chosen_configuration_per_seed_and_stores_the_figures(study) -> None:
    lines: list[str] = []
    result = run_validation(study, "tiny", ValidationSettings(configs=3, seeds=2), device="cpu", log=lines.append)
    assert len([line for line in lines if "training trial" in line]) == 3 * 2  # one line per training
    assert result["configurations"] == 3 and result["seeds"] == [2]
    assert result["split"] == "test" and result["settings"]["epochs"] == 1
    for key in ("kendall", "spearman", "flops_kendall", "partial_kendall", "regret"):
        assert result[key]["low"] <= result[key]["value"] <= result[key]["high"]
    assert result["machine"]["cpu"]
    validated = {row["trial"] for row in result["configurations_validated"]}
    assert result["recommended"] in validated
    stored = optuna.load_study(study_name="tiny", storage=study).user_attrs
    assert stored["fidelity"] == json.loads(json.dumps(result))
    versus = result["pick_vs_uniform"]
    uniform_trainings = 0 if versus["same"] else 2
    assert len([line for line in lines if "training uniform k = " in line]) == uniform_trainings
    assert versus["pick"] == result["recommended"] and versus["uniform_label"].startswith("uniform k = ")
    assert len(versus["uniform_accuracies"]) == 2 and "The study's pick (trial" in result["verdict"]
    if not versus["same"]:
        d = versus["difference"]
        assert d["low"] <= d["value"] <= d["high"]
        assert d["value"] == pytest.approx(versus["pick_mean"] - versus["uniform_mean"])
    runs = {k: v for k, v in stored.items() if k.startswith("validation:")}
    assert len(runs) == 6 + uniform_trainings
    for run in runs.values():
        assert 0.0 <= run["test_accuracy"] <= 1.0 and run["test_examples"] == 360  # digits' test split


def test_a_rerun_trains_only_what_is_missing(study) -> None:
    before = _runs(optuna.load_study(study_name="tiny", storage=study))
    lines: list[str] = []
    run_validation(study, "tiny", ValidationSettings(configs=4, seeds=2), device="cpu", log=lines.append)
    assert len([line for line in lines if "training trial" in line]) == 2  # the new configuration, two seeds
    after = _runs(optuna.load_study(study_name="tiny", storage=study))
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


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_parallel_jobs_store_every_training(study) -> None:
    # Two processes train at once, each storing its own attribute: none is lost or overwritten.
    before = _runs(optuna.load_study(study_name="tiny", storage=study))
    lines: list[str] = []
    run_validation(study, "tiny", ValidationSettings(configs=5, seeds=2), device="cpu", jobs=2, log=lines.append)
    after = _runs(optuna.load_study(study_name="tiny", storage=study))
    assert len(after) >= 10 and {k: after[k] for k in before} == before
    assert len([line for line in lines if line.startswith("[") and "stored" in line]) == len(after) - len(before)
    again = run_validation(study, "tiny", ValidationSettings(configs=5, seeds=2), device="cpu")
    assert again["configurations"] == 5


def test_the_uniform_partner_is_the_uniform_k_of_nearest_cost_and_the_interval_is_welchs() -> None:
    from scipy import stats

    from sparsearch.cost import count
    from sparsearch.study.validate import uniform_partner, welch_interval
    from tests.study.helpers import tiny_space

    space = tiny_space()
    half = space.expand({"k": 6, "routing": "softmax"})
    flops = count(space.target_config(half)).executed_flops
    values, cost, label = uniform_partner(space, flops + 1)
    assert values == half and cost == flops and label == "uniform k = 6/12"
    a, b = (0.80, 0.82, 0.81), (0.70, 0.74, 0.72)
    d = welch_interval(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d["value"] == pytest.approx(0.09) and (d["low"], d["high"]) == pytest.approx((welch.low, welch.high))
    assert welch_interval((0.5,), b) is None


@pytest.mark.slow
def test_validate_under_torchrun_trains_data_parallel_and_rank_0_stores(study) -> None:
    import os
    import subprocess
    import sys

    before = _runs(optuna.load_study(study_name="tiny", storage=study))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparsearch"]
    args = ["validate", "tiny", "--storage", study, "--configs", "6", "--seeds", "2", "--device", "cpu", "--json"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # printed once, by rank 0
    after = _runs(optuna.load_study(study_name="tiny", storage=study))
    assert result["configurations"] == 6 and len(after) > len(before) and {k: after[k] for k in before} == before
