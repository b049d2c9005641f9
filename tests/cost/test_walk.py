"""The walk over built modules agrees with the count of the configuration they were built from."""

from __future__ import annotations

import pytest

from sparsearch.config import layout
from sparsearch.cost import count
from sparsearch.cost.walk import find_network, network_cost
from sparsearch.models import build_model, create_vqa_model


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("clevr_cnn", {"input_size": 32, "k": 3, "routing": "relu_l1", "experts": 2}),
        ("gateconnect_cifar", {"depth": 20, "fan_in": 1, "num_classes": 10}),
        ("cc_mobilenet_v1", {"width": 0.25, "experts": 4, "input_size": 64, "num_classes": 10}),
        ("cc_resnet50", {"experts": 2, "input_size": 64, "num_classes": 10}),
    ],
)
def test_network_cost_equals_the_configuration_count(name, args) -> None:
    config = layout(name, **args)
    assert network_cost(build_model(config)) == count(config)


def test_find_network_reads_through_a_vqa_model() -> None:
    model = create_vqa_model(
        "resnext101_32x4d", vocab_size=20, num_answers=5, input_size=64, cardinality=4, k=2, routing="softmax"
    )
    assert find_network(model) is model.backbone
    with pytest.raises(TypeError, match="no sparsearch network"):
        find_network(model.classifier)
