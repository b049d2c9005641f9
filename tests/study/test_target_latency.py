"""The target of a Pareto configuration is timed with the inputs its family's network takes (a whole
VQA model reads the question's tokens too)."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution

from sparsearch.cost import count
from sparsearch.cost.budget import Budget
from sparsearch.spaces import get_space
from sparsearch.study.settings import StudySettings
from sparsearch.study.target_latency import ATTR, measure_target_latency


def test_a_relation_network_target_is_timed_against_its_dense_form() -> None:
    space = get_space("sort_of_clevr")
    values = space.expand({"k": 3, "routing": "softmax"})
    flops = count(space.target_config(values)).executed_flops
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.5, flops],
            params={"x": 0.0},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"feasible": True, "values": values},
        )
    )
    settings = StudySettings(
        space="sort_of_clevr", space_text="", space_source="sort_of_clevr", budget=Budget.flops(flops)
    )
    timed = measure_target_latency(study, settings, space, rounds=1)
    figures = timed["trials"]["0"]["1"]
    assert figures["ms"] > 0 and figures["dense_ms"] > 0 and study.user_attrs[ATTR] == timed
