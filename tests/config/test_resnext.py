from __future__ import annotations

import pytest

from sparsearch.config import NetConfig, StageConfig, layout, plan, with_knobs
from sparsearch.errors import ConfigError


def test_knobs_expand_per_block_and_default_off() -> None:
    s = StageConfig("conv3", 4, 512, 32, 8, 2)
    assert s.k == (32, 32, 32, 32) and s.experts == (1,) * 4 and s.routing == ("constant",) * 4
    s = StageConfig("conv3", 2, 512, 32, 8, 2, k=(8, 16), routing="softmax")
    assert s.k == (8, 16) and s.routing == ("softmax", "softmax")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(k=40, routing="softmax"), "k=40 exceeds cardinality 32 in stage conv3 block 0"),
        (dict(k=(8, 8, 8)), "k has 3 values but stage conv3 has 4 blocks"),
        (dict(k=8), "routing 'constant' cannot rank paths: k=8 < cardinality 32 in stage conv3 block 0"),
        (dict(experts=0), "experts=0 must be a positive integer in stage conv3 block 0"),
        (dict(experts=2.5), r"experts=2.5 must be a positive integer in stage conv3 block 0"),
        (dict(routing="tanh"), "routing='tanh' in stage conv3 block 0; known: constant, noisy_topk"),
        (dict(fan_in=33), r"fan_in=33 must be in 1..32 \(the cardinality\) in stage conv3"),
        (dict(fan_in=4, k=8, routing="softmax"), "a GateConnect stage .* takes neither top-k nor experts"),
        (dict(width=0), "width=0 must be a positive integer in stage conv3"),
    ],
)
def test_stage_errors_name_the_stage_key_and_value(kwargs: dict, message: str) -> None:
    args = dict(name="conv3", depth=4, out_channels=512, cardinality=32, width=8, stride=2) | kwargs
    with pytest.raises(ConfigError, match=message):
        StageConfig(**args)


def test_network_errors() -> None:
    stage = StageConfig("a", 1, 8, 2, 2)
    with pytest.raises(ConfigError, match="at least one stage, got an empty stage list"):
        NetConfig(())
    with pytest.raises(ConfigError, match="head='pool'; allowed: classifier, features, conv"):
        NetConfig((stage,), head="pool")
    with pytest.raises(ConfigError, match="stage names must be unique"):
        NetConfig((stage, stage))
    with pytest.raises(
        ConfigError, match="unknown model 'resnet'; known: cc_mobilenet_v1, cc_mobilenet_v2, cc_resnet50, clevr_cnn"
    ):
        layout("resnet")
    with pytest.raises(ConfigError, match="k names unknown stage"):
        with_knobs(layout("clevr_cnn"), k={"conv9": 2})
    with pytest.raises(ConfigError, match="unknown knob"):
        with_knobs(layout("clevr_cnn"), depth=2)


def test_plan_follows_the_seed_layouts() -> None:
    p = plan(layout("resnext101_32x4d", input_size=448, head="features"))
    assert p.stem_size == (224, 224) and p.pooled_size == (112, 112)
    assert [b.out_size[0] for b in p.blocks if b.name.endswith(".0")] == [112, 56, 28, 14]
    assert len(p.blocks) == 3 + 4 + 23 + 3  # ResNeXt-101: 33 blocks · 3 layers + stem + fc = 101
    clevr = plan(layout("clevr_cnn"))  # seed 000 Table 4 at 128×128: 64, 32, 32, 16, 8
    assert clevr.stem_size == (64, 64) and [b.out_size[0] for b in clevr.blocks] == [32, 16, 8]
    cifar = plan(layout("gateconnect_cifar", depth=20, width=4, fan_in=2))
    assert len(cifar.blocks) == 6  # D = 2 + 3·M = 20: M = 6 modules
    assert [b.num_inputs for b in cifar.blocks] == [1, 8, 8, 8, 8, 8]  # the stem feeds the first
    assert plan(layout("gateconnect_mini_imagenet")).pooled_size == (42, 42)  # 84 -> pool
