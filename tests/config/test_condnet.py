from __future__ import annotations

import pytest

from sparsearch.config import CondNetConfig, condnet_plan
from sparsearch.errors import ConfigError


def test_the_plan_follows_the_mobilenet_v1_layout() -> None:
    layers, head_in = condnet_plan(CondNetConfig("mobilenet_v1", input_size=224))
    assert head_in == 1024 and len(layers) == 14  # the stem and 13 separable blocks
    assert layers[0].out_hw == (112, 112) and layers[-1].out_hw == (7, 7)
    assert [spec.cond for spec in layers].count(True) == 8  # CondConv in the final 8 blocks


def test_the_plan_of_resnet50_pools_after_the_stem_and_projects_at_stage_starts() -> None:
    layers, head_in = condnet_plan(CondNetConfig("resnet50"))
    assert head_in == 2048 and layers[0].out_hw == (56, 56)
    assert [spec.residual for spec in layers[1:5]] == ["projection", "identity", "identity", "projection"]
    assert [spec.cond for spec in layers].count(True) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"arch": "vgg"}, "arch='vgg'"),
        ({"arch": "resnet50", "width": 0.5}, "not available for resnet50"),
        ({"arch": "mobilenet_v1", "experts": 0}, "experts=0"),
        ({"arch": "mobilenet_v1", "routing": "noisy_topk"}, "routing='noisy_topk'"),
    ],
)
def test_bad_configurations_are_refused(args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        CondNetConfig(**args)
