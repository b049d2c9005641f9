"""The family contract: a family written in one file (tests/toy_family.py) is counted, trained and searched."""

from __future__ import annotations

import importlib
import json
import sys

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.cli import main
from sparsearch.config import config_from_dict, config_to_dict, layout
from sparsearch.cost import count
from sparsearch.cost.walk import network_cost
from sparsearch.models import build_model


@pytest.fixture(autouse=True)
def toy_family():
    """The toy family registered for each test here (importing tests/toy_family.py is all it takes), and
    forgotten afterwards so that the other tests see the shipped families only."""
    import sparsearch.config.family as families
    import sparsearch.config.layouts as layouts

    counts = importlib.import_module("sparsearch.cost.count")  # the module (the package's `count` is a function)
    import sparsearch.models.registry as builders

    sys.modules.pop("tests.toy_family", None)
    module = importlib.import_module("tests.toy_family")  # registers the family
    yield module
    families._FAMILIES.pop("toy")
    layouts._LAYOUTS.pop("toy")
    builders._BUILDERS.pop(module.ToyConfig)
    counts._COUNTERS.pop(module.ToyConfig)


SPACE = """\
name: toy
description: the toy family of tests/toy_family.py
target: {model: toy, input_size: 16, channels: 8, paths: 4}
proxy: {dataset: digits, input_size: 8, width: 0.5, epochs: 1}
knobs:
  k: {per: stage, min: 1, max: cardinality}
"""


def test_the_toy_family_counts_exactly_and_round_trips() -> None:
    config = layout("toy", k=3)
    with FlopCounterMode(display=False) as counter:
        build_model(config)(torch.zeros(1, 3, 16, 16))
    report = count(config)
    # stem 8·3·9·256 = 55,296 MACs; 3 of 4 paths 3·(8·8·9·256) = 442,368; head 8·10 = 80
    assert report.executed_macs == 55_296 + 442_368 + 80
    assert 2 * report.executed_macs == counter.get_total_flops()  # FlopCounterMode counts what runs
    assert report.params == sum(p.numel() for p in build_model(config).parameters())
    assert network_cost(build_model(config)) == report  # no walk registered: counted from its configuration
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


@pytest.mark.integration  # runs a study (make test, not make check)
def test_flops_train_and_a_tiny_study_run_on_the_toy_family(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.yaml").write_text(SPACE)
    assert main(["flops", "toy.yaml", "--set", "k=2", "--json"]) == 0
    flops = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in flops["layers"]] == ["stem", "body", "head"]
    assert flops["total"]["executed_flops"] == 2 * (55_296 + 2 * 147_456 + 80)  # k = 2 of 4 paths

    assert main(["train", "--space", "toy.yaml", "--set", "k=2", "--out", "run", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert 0 <= trained["val_accuracy"] <= 1 and trained["values"] == {"body.k": 2}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["config"]["family"] == "toy"

    budget = "600kFLOPs"  # k <= 2 fits at the target (k = 3 is 1,195,008 FLOPs)
    for mode in ("supernet", "train"):
        args = ["study", "--space", "toy.yaml", "--budget", budget, "--trials", "4", "--eval", mode, "--json"]
        assert main([*args, "--study-name", f"toy-{mode}", "--finetune-steps", "1"]) == 0
        summary = json.loads(capsys.readouterr().out)
        study = optuna.load_study(study_name=f"toy-{mode}", storage=f"sqlite:///studies/toy-{mode}.db")
        feasible = [t for t in study.get_trials() if t.user_attrs.get("feasible")]
        assert feasible and all(t.user_attrs["target"]["executed_flops"] <= 600_000 for t in feasible)
        assert summary["eval"] == mode and summary["pareto"]
