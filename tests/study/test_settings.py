from __future__ import annotations

from dataclasses import replace

import pytest

from sparsearch.cost.budget import Budget
from sparsearch.errors import ConfigError
from sparsearch.study.evaluators import SupernetEvaluator
from sparsearch.study.settings import StudySettings, default_study_name
from tests.study.helpers import tiny_settings


def test_settings_round_trip_through_their_dict() -> None:
    settings = tiny_settings(12_340_000_000, lr=0.01, epochs=3)
    assert StudySettings.from_dict(settings.to_dict()) == settings
    assert settings.n_trials == 6 and tiny_settings(1, trials=None).n_trials == SupernetEvaluator.default_trials


def test_run_options_change_only_what_is_given() -> None:
    settings = tiny_settings(10**9)
    again = settings.with_run_options(trials=9, finetune_steps=None)
    assert again.trials == 9 and again.finetune_steps == settings.finetune_steps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"eval": "guess"}, "eval='guess'"),
        ({"sampling": "all"}, "sampling='all'"),
        ({"epochs": 0}, "epochs=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"score_examples": -1}, "score_examples=-1"),
        ({"supernet_precision": "fp8"}, "supernet precision='fp8'"),
        ({"sandwich_random": -1}, "sandwich_random=-1"),
    ],
)
def test_bad_settings_are_refused(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_settings(10**9, **overrides)


def test_a_budget_is_one_value_that_parses_compares_prints_and_names() -> None:
    flops, ms = Budget.parse("25GMACs"), Budget.parse("0.15s")
    assert (flops.amount, flops.unit, flops.text, flops.display) == (50 * 10**9, "FLOPs", "50GFLOPs", "50 GFLOPs")
    assert (ms.amount, ms.unit, ms.text) == (150.0, "ms", "150ms")
    assert ms.display == "150ms predicted target latency (batch 1)"
    assert flops.admits(50 * 10**9) and not flops.admits(50 * 10**9 + 1)
    assert ms.violation(165.0) == pytest.approx(0.1)  # (165 - 150) / 150
    assert Budget.parse(flops.text) == flops and Budget.parse(ms.text) == ms
    with pytest.raises(ConfigError, match="expected a Budget"):
        StudySettings("tiny", "", "", "50GFLOPs")
    with pytest.raises(ConfigError, match="positive number"):
        Budget(0, "FLOPs")


def test_a_study_stored_before_the_budget_was_one_value_reads_the_same() -> None:
    new = tiny_settings(12_340_000_000)
    old = {k: v for k, v in new.to_dict().items() if k not in ("budget", "dense_flops")}
    assert StudySettings.from_dict({**old, "budget_flops": 12_340_000_000, "budget_ms": None}) == new
    latency = StudySettings.from_dict({**old, "budget_flops": 7, "budget_ms": 150.0, "latency_table": {}})
    assert latency.budget == Budget(150.0, "ms") and latency.flops_reference == 7
    assert latency.cost_budget == 7  # the FLOPs objective's reference under a latency budget is the dense FLOPs
    assert replace(latency, objective="latency").cost_budget == 150.0


def test_the_default_name_carries_the_budget_exactly() -> None:
    assert default_study_name("default", Budget.flops(50 * 10**9)) == "default-50GFLOPs"
    assert default_study_name("default", Budget.flops(12_340_000_000)) == "default-12.34GFLOPs"
    assert default_study_name("my space", Budget.flops(12_300_000_000)) == "my_space-12.3GFLOPs"
    assert default_study_name("default", Budget.parse("0.15s")) == "default-150ms"
