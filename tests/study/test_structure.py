from __future__ import annotations

import pytest

from sparsearch.errors import ConfigError
from sparsearch.spaces import get_space
from sparsearch.study.structure import Structure, candidate_structures, choose_structures, references


def test_default_space_references_are_uniform_k_with_the_reference_structure() -> None:
    space = get_space("default")
    refs = references(space)
    assert [r.name for r in refs] == ["uniform k = C", "uniform k = C/2", "uniform k = C/4"]
    for ref, k in zip(refs, (32, 16, 8), strict=True):
        assert {v for key, v in ref.values.items() if key.endswith(".k")} == {k}
        assert {v for key, v in ref.values.items() if key.endswith(".routing")} == {"softmax"}
        assert {v for key, v in ref.values.items() if key.endswith(".experts")} == {1}
        assert set(ref.values) == set(space.parameters())


def test_gateconnect_references_set_fan_in() -> None:
    refs = references(get_space("gateconnect_cifar"))
    assert [r.name for r in refs] == ["uniform fan-in K = C", "uniform fan-in K = C/2", "uniform fan-in K = C/4"]
    assert refs[2].values == {"stage1.fan_in": 2, "stage2.fan_in": 2, "stage3.fan_in": 2}


def test_structures_reference_first_then_a_seeded_draw() -> None:
    space = get_space("default")
    every = candidate_structures(space)
    assert len(every) == 16  # 4 routings x 4 expert counts
    assert every[0].label == "experts=1,routing=softmax"
    chosen = choose_structures(space, 3, seed=0)
    assert chosen[0] == every[0] and len(set(chosen)) == 3
    assert chosen == choose_structures(space, 3, seed=0)
    assert Structure.from_label(chosen[1].label) == chosen[1]
    assert chosen[1].values(space)["conv3.experts"] == dict(chosen[1].settings)["experts"]


def test_a_space_without_k_or_fan_in_cannot_share_weights() -> None:
    with pytest.raises(ConfigError, match=r"searches no k or fan-in.*use --eval train"):
        choose_structures(get_space("condconv_mobilenet_v1"), 2, seed=0)
