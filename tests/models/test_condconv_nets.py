from __future__ import annotations

import pytest
import torch

from sparsearch.cost import count
from sparsearch.cost.verify import flop_counter_flops
from sparsearch.errors import ConfigError
from sparsearch.layers import CondConv2d, CondLinear
from sparsearch.models import create_model, layout


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("cc_mobilenet_v1", dict(width=0.25, experts=4, input_size=64, num_classes=10)),
        ("cc_mobilenet_v2", dict(width=0.35, experts=2, input_size=64, num_classes=10)),
        ("cc_resnet50", dict(experts=2, input_size=32, num_classes=10)),
        ("cc_resnet50", dict(input_size=32, num_classes=10)),
    ],
)
def test_analytic_cost_equals_flop_counter_and_parameters(name: str, kwargs: dict) -> None:
    config = layout(name, **kwargs)
    model = create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, config.input_size, config.input_size)  # batch 1: the mixed (inference) form
    assert flop_counter_flops(model, x) == count(config).executed_flops
    assert sum(p.numel() for p in model.parameters()) == count(config).params
    assert model(torch.randn(2, 3, config.input_size, config.input_size)).shape == (2, 10)


def test_condconv_sits_where_seed_001_puts_it() -> None:
    v1 = create_model("cc_mobilenet_v1", width=0.25, experts=4)
    assert sum(isinstance(m, CondConv2d) for m in v1.modules()) == 16  # dw + pw of the final 8 blocks
    assert isinstance(v1.classifier, CondLinear)
    v2 = create_model("cc_mobilenet_v2", width=0.35, experts=2)
    assert sum(isinstance(m, CondConv2d) for m in v2.modules()) == 6 * 3 + 1  # 6 blocks × 3 layers, final 1×1
    rn = create_model("cc_resnet50", experts=2)
    assert sum(isinstance(m, CondConv2d) for m in rn.modules()) == 3 * 3  # final 3 residual blocks
    assert not any(isinstance(m, CondConv2d) for m in create_model("cc_resnet50").modules())  # experts=1


# Seed 001 tables: (model, kwargs, params ×1e6, MADDs ×1e6)
PUBLISHED = [
    ("cc_mobilenet_v1", dict(width=0.5), 1.3, 150),  # Table 1, MobileNetV1(0.5x)
    *[
        ("cc_mobilenet_v1", dict(width=0.5, experts=n), p, m)
        for n, p, m in ((2, 2.6, 152), (4, 5.2, 154), (8, 10.4, 160), (16, 20.7, 170), (32, 41.3, 190))
    ],
    ("cc_mobilenet_v1", dict(width=1.0), 4.2, 569),
    ("cc_mobilenet_v2", dict(width=0.5), 2.0, 97),  # Table 2
    ("cc_mobilenet_v2", dict(width=1.0), 3.5, 301),
    ("cc_mobilenet_v2", dict(width=1.4), 6.1, 583),
    ("cc_resnet50", dict(), 25.6, 4093),  # Table 3
    ("cc_resnet50", dict(experts=8), 130.2, 4213),
]


@pytest.mark.parametrize(("name", "kwargs", "params", "madds"), PUBLISHED, ids=lambda v: str(v))
def test_seed_001_params_and_madds_within_2_percent(name: str, kwargs: dict, params: float, madds: float) -> None:
    report = count(layout(name, **kwargs))
    assert abs(report.params / 1e6 - params) / params < 0.02 + 0.05 / params  # tables round to 0.1M
    assert abs(report.executed_macs / 1e6 - madds) / madds < 0.02


@pytest.mark.parametrize(
    ("name", "kwargs", "params", "madds", "ours"),
    [  # MADDs agree; the parameter counts fall short (docs/costs.md, "Seed 001's tables")
        ("cc_mobilenet_v2", dict(width=0.5, experts=8), 15.5, 113, 15_055_808),
        ("cc_mobilenet_v2", dict(width=1.0, experts=8), 27.5, 329, 25_755_264),
        ("cc_resnet50", dict(experts=2), 42.6, 4127, 40_471_588),
    ],
)
def test_seed_001_rows_whose_parameters_differ(name: str, kwargs: dict, params: float, madds: float, ours: int) -> None:
    report = count(layout(name, **kwargs))
    assert abs(report.executed_macs / 1e6 - madds) / madds < 0.02
    assert report.params == ours  # 2.9%, 6.3% and 5.0% below the published counts


def test_bad_condnet_arguments() -> None:
    with pytest.raises(ConfigError, match="experts=0 must be a positive integer"):
        layout("cc_mobilenet_v1", experts=0)
    with pytest.raises(ConfigError, match=r"width=0\.5 is not available for resnet50"):
        layout("cc_resnet50", width=0.5)
    with pytest.raises(ConfigError, match="model 'cc_mobilenet_v1' has no knob 'k'; its knobs: experts, routing"):
        layout("cc_mobilenet_v1", k=4)
    with pytest.raises(ConfigError, match=r"model 'cc_mobilenet_v1': .*unexpected keyword argument 'depth'"):
        layout("cc_mobilenet_v1", depth=4)
