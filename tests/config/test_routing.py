from __future__ import annotations

import subprocess
import sys

import pytest

from sparsearch.config import declare_routing


def test_the_built_in_names_are_known_without_torch() -> None:
    code = "import sys; from sparsearch.config import routing_names; print(routing_names(), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['constant', 'noisy_topk', 'relu_l1', 'sigmoid', 'softmax'] False"


def test_a_layer_registered_routing_becomes_a_name_configurations_accept() -> None:
    # In its own process: the registries are global, and other tests list every routing.
    code = """
from sparsearch.config import StageConfig, routing_names
from sparsearch.errors import ConfigError
from sparsearch.layers import Routing, create_routing, register_routing
try:
    StageConfig("s", 1, 8, 4, 2, k=2, routing="halved")
except ConfigError as err:
    print("refused:", "routing='halved'" in str(err))

@register_routing
class Halved(Routing):
    name = "halved"

    def normalise(self, logits):
        return logits.softmax(dim=1) / 2

print("halved" in routing_names(), StageConfig("s", 1, 8, 4, 2, k=2, routing="halved").routing)
print(type(create_routing("halved", 8, 4)).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "refused: True\nTrue ('halved',)\nHalved\n"


def test_a_routing_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="identifier"):
        declare_routing("not a name")
