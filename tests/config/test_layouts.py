from __future__ import annotations

import subprocess
import sys

import pytest

from sparsearch.config import (
    CondNetConfig,
    NetConfig,
    layout,
    layout_arguments,
    layout_doc,
    model_names,
)
from sparsearch.errors import ConfigError


def test_the_seed_layouts_are_registered() -> None:
    names = model_names()
    assert {"resnext101_32x4d", "clevr_cnn", "gateconnect_cifar", "cc_mobilenet_v1", "cc_resnet50"} <= set(names)
    assert names == sorted(names)


def test_knobs_go_to_the_configuration_and_the_rest_to_the_factory() -> None:
    config = layout("resnext101_32x4d", input_size=448, k={"conv4": 8}, routing="softmax")
    assert isinstance(config, NetConfig) and config.input_size == 448
    assert config.stages[2].k == (8,) * 23 and config.stages[0].k == (32,) * 3
    cc = layout("cc_mobilenet_v1", width=0.5, experts=4)
    assert isinstance(cc, CondNetConfig) and cc.experts == 4 and cc.width == 0.5


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("nope", {}, "unknown model 'nope'"),
        ("clevr_cnn", {"depth": 3}, "model 'clevr_cnn'"),
        ("cc_resnet50", {"fan_in": 2}, "has no knob 'fan_in'"),
    ],
)
def test_bad_layouts_and_arguments_are_refused(name, args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        layout(name, **args)


def test_layout_arguments_leave_out_the_knobs() -> None:
    args = dict(layout_arguments("resnext101_32x4d"))
    assert args == {"input_size": 224, "head": "classifier", "num_classes": 1000, "cardinality": 32, "cond_dim": None}
    cc = dict(layout_arguments("cc_mobilenet_v2"))
    assert "experts" not in cc and "arch" not in cc and cc["width"] == 1.0
    assert layout_doc("resnext101_32x4d").startswith("ResNeXt-101")


def test_a_layout_of_ones_own_is_registered_once() -> None:
    # In its own process: the registry is global, and other tests list every registered layout.
    code = """
import inspect
from sparsearch.config import NetConfig, layout, layout_arguments, model_names, register_layout
from sparsearch.config.layouts import resnext101_32x4d

def tiny(input_size: int = 32) -> NetConfig:
    return resnext101_32x4d(input_size=input_size, cardinality=4)

register_layout("tiny", tiny)
assert "tiny" in model_names() and layout("tiny").input_size == 32
assert layout_arguments("tiny") == [("input_size", 32)]
try:
    register_layout("tiny", tiny)
except ValueError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "layout 'tiny' is already registered\n"
