"""Property-based tests (hypothesis): random valid configurations of the model family and random inputs.

For every configuration hypothesis draws: it builds and runs without an exception; the analytic FLOPs
equal what FlopCounterMode measures; top-k blocks give the same outputs in sparse and masked execution
(eval and train), CondConv layers in their experts and mixed forms. For random text as a budget or a
search space: a value or a ConfigError, never another exception.

The runs are derandomized (the same examples every run), so the default suite cannot flake; set
``HYPOTHESIS_PROFILE=explore`` to draw new ones.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsearch.config import CondNetConfig, NetConfig, StageConfig
from sparsearch.cost import count, parse_budget
from sparsearch.cost.verify import flop_counter_flops
from sparsearch.errors import ConfigError
from sparsearch.layers import CondConv2d, TopKBottleneck
from sparsearch.models import build_model
from sparsearch.spaces import parse_space

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

RANKING = ("softmax", "relu_l1", "sigmoid", "noisy_topk")


@st.composite
def stages(draw, index: int) -> StageConfig:
    name = f"s{index}"
    c = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    depth = draw(st.integers(1, 2))
    shape = dict(
        depth=depth,
        out_channels=draw(st.sampled_from([4, 8, 12, 16])),
        cardinality=c,
        width=draw(st.integers(1, 4)),
        stride=draw(st.sampled_from([1, 2])),
    )
    if c > 1 and draw(st.booleans()) and draw(st.booleans()):  # a GateConnect stage, one time in four
        return StageConfig(name, **shape, fan_in=draw(st.integers(1, c)))
    ks = [draw(st.integers(1, c)) for _ in range(depth)]
    routings = [draw(st.sampled_from(RANKING if k < c else ("constant", *RANKING))) for k in ks]
    experts = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(depth)]
    return StageConfig(name, **shape, k=tuple(ks), routing=tuple(routings), experts=tuple(experts))


@st.composite
def networks(draw) -> NetConfig:
    n = draw(st.integers(1, 3))
    head = draw(st.sampled_from(["classifier", "features", "conv"]))
    return NetConfig(
        tuple(draw(stages(i)) for i in range(n)),
        input_size=draw(st.integers(6, 20)),
        in_channels=draw(st.sampled_from([1, 3])),
        stem_channels=draw(st.sampled_from([4, 8])),
        stem_kernel=draw(st.sampled_from([1, 3])),
        stem_stride=draw(st.sampled_from([1, 2])),
        stem_pool=draw(st.booleans()),
        head=head,
        num_classes=draw(st.integers(2, 5)),
        head_channels=draw(st.integers(1, 6)) if head == "conv" else 0,
        cond_dim=draw(st.none() | st.integers(2, 6)),
        expert_routing=draw(st.sampled_from(["sigmoid", "softmax", "relu_l1", "constant"])),
        connectivity=draw(st.sampled_from(["learned", "fixed_random"])),
    )


def _inputs(config: NetConfig, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, generator=g)
    x = x + 2 * torch.randn(batch, config.in_channels, 1, 1, generator=g)  # examples choose different paths
    return (x,) if config.cond_dim is None else (x, torch.randn(batch, config.cond_dim, generator=g))


def _with_statistics(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():  # non-trivial running statistics, so eval mode is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return model


@given(config=networks(), seed=st.integers(0, 2**16))
def test_random_networks_run_and_the_analytic_count_is_what_runs(config: NetConfig, seed: int) -> None:
    torch.manual_seed(seed)
    model = _with_statistics(build_model(config)).eval()
    cost = count(config)
    assert 0 < cost.executed_flops <= cost.dense_flops and cost.params > 0
    assert flop_counter_flops(model, *_inputs(config, 1, seed)) == cost.executed_flops


@pytest.mark.parametrize("mode", ["eval", "train"])
@given(config=networks(), seed=st.integers(0, 2**16))
def test_random_networks_give_the_same_outputs_sparse_and_masked(mode: str, config: NetConfig, seed: int) -> None:
    torch.manual_seed(seed)
    # In float64, so that the comparison is of the two executions and not of float32 rounding (which
    # batch norm in train mode amplifies on small batches).
    sparse = _with_statistics(build_model(config)).double().train(mode == "train")
    masked = copy.deepcopy(sparse)
    for m in masked.modules():
        if isinstance(m, TopKBottleneck):
            m.execution = "masked"
    inputs = tuple(t.double() for t in _inputs(config, 3, seed))
    torch.manual_seed(seed)  # the same routing noise (noisy_topk) for both
    a = sparse(*inputs)
    torch.manual_seed(seed)
    b = masked(*inputs)
    assert a.shape == b.shape and torch.isfinite(a).all()
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (a - b).abs().max()


@given(
    arch=st.sampled_from(["mobilenet_v1", "mobilenet_v2"]),
    width=st.sampled_from([0.25, 0.35, 0.5]),
    experts=st.integers(1, 5),
    routing=st.sampled_from(["sigmoid", "softmax", "relu_l1", "constant"]),
    input_size=st.integers(8, 48),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=15)
def test_random_condconv_networks_count_and_both_forms_agree(arch, width, experts, routing, input_size, seed) -> None:
    config = CondNetConfig(arch, width=width, experts=experts, routing=routing, input_size=input_size, num_classes=7)
    torch.manual_seed(seed)
    model = _with_statistics(build_model(config)).eval()
    x = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    assert flop_counter_flops(model, x[:1]) == count(config).executed_flops
    model, x = model.double(), x.double()
    outputs = []
    for form in ("experts", "mixed"):
        for m in model.modules():
            if isinstance(m, CondConv2d):
                m.execution = form
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-9, atol=1e-9)


@given(text=st.text(max_size=30) | st.from_regex(r"[+-]?[0-9.eE+-]{1,12}\s?[KMGT]?(FLOPs|MACs)?", fullmatch=True))
def test_a_budget_is_a_positive_count_or_a_config_error(text: str) -> None:
    try:
        flops = parse_budget(text)
    except ConfigError as err:
        assert str(err).startswith(f"budget {text!r}") and "\n" not in str(err)
    else:
        assert isinstance(flops, int) and flops >= 1


LEAVES = st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True) | st.text(max_size=8)
BASE = yaml.safe_load("""
name: fuzz
target: {model: clevr_cnn, input_size: 32}
proxy: {dataset: digits, input_size: 16, width: 0.5, depth: [1, 1, 1], epochs: 1}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {choices: [softmax, relu_l1]}
  experts: {choices: [1, 2]}
""")


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@given(
    where=st.sampled_from(list(_paths(BASE))),
    value=LEAVES | st.lists(LEAVES, max_size=3) | st.dictionaries(st.text(max_size=5), LEAVES, max_size=2),
)
def test_a_mutated_space_file_is_a_space_or_a_config_error(where: tuple, value) -> None:
    document = copy.deepcopy(BASE)
    if where:
        parent = document
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
    else:
        document = value
    try:
        space = parse_space(yaml.safe_dump(document), "fuzz.yaml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.yaml: ") and "\n" not in str(err)
    else:
        values = {name: choices[0] for name, choices in space.parameters().items()}
        count(space.target_config(values))  # an accepted space gives valid configurations
        count(space.proxy_config(values))
