from __future__ import annotations

import json

import pytest

from sparsearch.config import config_from_dict, config_to_dict, layout
from sparsearch.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("resnext101_32x4d", {"input_size": 448, "k": {"conv3": 8}, "routing": {"conv3": "softmax"}}),
        ("gateconnect_cifar", {"depth": 29, "width": 8, "cardinality": 8, "fan_in": {"stage2": 1}}),
        ("clevr_cnn", {"input_size": 64}),
        ("cc_mobilenet_v2", {"width": 0.5, "experts": 8}),
    ],
)
def test_configs_survive_json(name: str, args: dict) -> None:
    config = layout(name, **args)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_a_bad_config_dict_names_the_problem() -> None:
    data = config_to_dict(layout("clevr_cnn", input_size=64))
    data["stages"][0]["k"] = 99
    with pytest.raises(ConfigError, match="k=99 exceeds cardinality 12"):
        config_from_dict(data)
    with pytest.raises(ConfigError, match="family='vgg'"):
        config_from_dict({**data, "family": "vgg"})
