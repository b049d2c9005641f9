from __future__ import annotations

import pytest

from sparsearch.errors import ConfigError
from sparsearch.study.settings import DEFAULT_TRIALS, StudySettings, default_study_name
from tests.study.helpers import tiny_settings


def test_settings_round_trip_through_their_dict() -> None:
    settings = tiny_settings(12_340_000_000, lr=0.01, epochs=3)
    assert StudySettings.from_dict(settings.to_dict()) == settings
    assert settings.n_trials == 6 and tiny_settings(1, trials=None).n_trials == DEFAULT_TRIALS["supernet"]


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
        ({"budget_flops": 0}, "budget=0"),
        ({"score_examples": -1}, "score_examples=-1"),
    ],
)
def test_bad_settings_are_refused(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_settings(10**9, **overrides)


def test_the_default_name_carries_the_budget_exactly() -> None:
    assert default_study_name("default", 50 * 10**9) == "default-50GFLOPs"
    assert default_study_name("default", 12_340_000_000) == "default-12.34GFLOPs"
    assert default_study_name("my space", 12_300_000_000) == "my_space-12.3GFLOPs"
