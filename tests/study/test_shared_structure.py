"""Experts and routing searched in one supernet (``shared: true``): one structure, both knobs sampled
per step and searched per stage, every trial scored on the one supernet."""

from __future__ import annotations

import pytest
import torch

from sparsearch.errors import ConfigError
from sparsearch.layers import TopKBottleneck
from sparsearch.spaces import parse_space
from sparsearch.study import run_study
from sparsearch.study.structure import candidate_structures, choose_structures, references, supernet_values
from sparsearch.study.supernet import Sampling, Supernet
from sparsearch.train import default_settings
from tests.study.helpers import tiny_settings

SHARED = """\
name: tiny_shared
description: CLEVR modular CNN at 32x32, proxy on digits at 16x16; experts and routing in one supernet
target: {model: clevr_cnn, input_size: 32}
proxy: {dataset: digits, input_size: 16, width: 0.5, depth: [1, 1, 1], epochs: 1, num_classes: 10}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  experts: {choices: [1, 2, 4], shared: true}
  routing: {choices: [softmax, relu_l1], shared: true}
"""


def _space():
    return parse_space(SHARED, "tiny_shared.yaml")


def test_one_structure_holds_every_value_and_the_references_keep_the_reference_structure() -> None:
    space = _space()
    assert space.shared_knobs == {"k", "fan_in", "experts", "routing"}
    assert [s.label for s in choose_structures(space, 3, seed=0)] == ["shared"]
    assert [s.label for s in candidate_structures(space)] == ["shared"]
    largest, smallest = supernet_values(space)
    assert {v for key, v in largest.items() if key.endswith(".experts")} == {4}
    assert {v for key, v in smallest.items() if key.endswith(".experts")} == {1}
    assert {v for key, v in largest.items() if key.endswith(".routing")} == {"softmax"}
    for ref in references(space):
        assert {v for key, v in ref.values.items() if key.endswith(".experts")} == {1}
        assert {v for key, v in ref.values.items() if key.endswith(".routing")} == {"softmax"}


@pytest.mark.integration
def test_training_switches_experts_and_routing_per_step(monkeypatch) -> None:
    import sparsearch.study.supernet as module

    space = _space()
    seen: set[tuple] = set()
    configure = module.configure

    def spy(model, space_, values):
        configure(model, space_, values)
        blocks = [m for m in model.modules() if isinstance(m, TopKBottleneck)]
        seen.update((b.active_experts, b.gate.routing.name) for b in blocks)

    monkeypatch.setattr(module, "configure", spy)
    settings = default_settings("classification", epochs=1, steps_per_epoch=8, seed=0)
    net = Supernet.train(space, candidate_structures(space)[0], settings, torch.device("cpu"), sampling=Sampling())
    assert {e for e, _ in seen} == {1, 2, 4} and {r for _, r in seen} == {"softmax", "relu_l1"}
    assert all(b.experts == 4 for b in net.model.modules() if isinstance(b, TopKBottleneck))


@pytest.mark.integration
def test_a_whole_study_searches_experts_and_routing_on_one_supernet(tmp_path) -> None:
    space = _space()
    settings = tiny_settings(10**12, space=space.name, space_text=SHARED, space_source="tiny_shared.yaml", trials=8)
    run = run_study(settings, storage_url=f"sqlite:///{tmp_path}/s.db", name="shared", device="cpu", artifacts=tmp_path)
    trials = [t for t in run.study.trials if t.values]
    assert {t.params["structure"] for t in trials} == {"shared"}
    assert any("conv2.experts" in t.params for t in trials)
    searched = {(t.params["conv2.experts"], t.params["conv2.routing"]) for t in trials if "conv2.experts" in t.params}
    assert len(searched) > 1
    assert len(list((tmp_path / "supernets").iterdir())) == 1


def test_a_family_that_cannot_switch_a_knob_in_place_refuses_to_share_it() -> None:
    text = """\
name: cc
target: {model: cc_mobilenet_v1, input_size: 32}
knobs:
  experts: {choices: [1, 2], shared: true}
"""
    with pytest.raises(ConfigError, match=r"knobs.experts.shared.*cannot switch experts in place"):
        parse_space(text, "cc.yaml")
    with pytest.raises(ConfigError, match=r"knobs.k.shared.*always shares"):
        parse_space(SHARED.replace("max: cardinality}", "max: cardinality, shared: false}"), "x.yaml")
