from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from sparsearch.errors import ConfigError
from sparsearch.study.samplers import SAMPLERS, make_sampler
from tests.study.helpers import tiny_settings


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_named_sampler_is_made_with_its_seed(name) -> None:
    sampler = make_sampler(name, 3)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_the_names_cost_no_import_of_optuna_or_torch() -> None:
    code = (
        "import sys; from sparsearch.study.samplers import SAMPLERS; "
        "print('optuna' in sys.modules or 'torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_settings_accept_exactly_the_named_samplers() -> None:
    for name in SAMPLERS:
        assert tiny_settings(10**9, sampler=name).sampler == name
    with pytest.raises(ConfigError, match="sampler='cmaes'; allowed: tpe, nsga2, gp, random"):
        tiny_settings(10**9, sampler="cmaes")
