from __future__ import annotations

import optuna
import pytest

from sparsearch.cost import count, parse_budget
from sparsearch.errors import ConfigError
from sparsearch.spaces import get_space, parse_space, space_names

GOOD = """
name: tiny
target: {model: clevr_cnn, input_size: 64}
proxy: {dataset: easy-vqa, input_size: 32, width: 0.5, depth: [1, 1, 1]}
knobs:
  k: {per: stage, min: 2, max: cardinality}
  routing: {choices: [softmax, relu_l1]}
"""


def test_shipped_spaces_load_and_the_default_budget_binds() -> None:
    assert space_names() == [
        "clevr",
        "condconv_mobilenet_v1",
        "default",
        "gateconnect_cifar",
        "gateconnect_digits",
        "sort_of_clevr",
    ]
    space = get_space("default")
    assert space.parameters()["conv4.k"] == tuple(range(1, 33))
    assert space.parameters()["conv2.experts"] == (1, 2, 4, 8)
    budget = parse_budget("50GFLOPs")
    assert count(space.target_config()).dense_flops > budget  # the dense target: 63.7 GFLOPs
    uniform = {
        f"{s}.{knob}": v
        for s in ("conv2", "conv3", "conv4", "conv5")
        for knob, v in (("k", 16), ("routing", "softmax"))
    }
    assert count(space.target_config(uniform)).executed_flops < budget  # uniform k = 16: 33.8 GFLOPs


def test_values_reach_target_and_proxy() -> None:
    space = parse_space(GOOD, "tiny.yaml")
    values = {
        "conv2.k": 3,
        "conv3.k": 12,
        "conv4.k": 6,
        "conv2.routing": "relu_l1",
        "conv3.routing": "softmax",
        "conv4.routing": "softmax",
    }
    target, proxy = space.target_config(values), space.proxy_config(values)
    assert [s.k for s in target.stages] == [(3,), (12,), (6,)]
    assert [s.k for s in proxy.stages] == [(3,), (12,), (6,)]
    assert target.stages[0].routing == ("relu_l1",)
    assert proxy.input_size == 32 and proxy.stem_channels == 32 and proxy.stages[0].width == 2  # × 0.5
    with pytest.raises(ConfigError, match=r"conv2.k=1 is not allowed; allowed: 2..12"):
        space.target_config({"conv2.k": 1})
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['conv9.k'\]"):
        space.target_config({"conv9.k": 2})


def test_sampling_from_a_real_optuna_trial() -> None:
    space = get_space("default")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0))
    for _ in range(5):
        trial = study.ask()
        values = space.sample(trial)
        assert set(values) == set(space.parameters())
        config = space.target_config(values)  # always a valid configuration
        assert count(config).executed_flops <= count(config).dense_flops
        study.tell(trial, [0.5, count(config).executed_flops])
    assert len(study.trials) == 5


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_space(text, "bad.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("knobs:", "knobs:\n  k: [1, 2"), "bad.yaml: YAML syntax error at line"),
        (("name: tiny", "name: tiny\ncolour: red"), "bad.yaml: colour: unknown key; allowed: description, knobs"),
        (("max: cardinality}", "max: 40}"), "bad.yaml: knobs.k.max: k=40 exceeds cardinality 12 in stage conv2"),
        (("min: 2", "min: two"), "bad.yaml: knobs.k.min: expected a positive integer or 'cardinality', got 'two'"),
        (("{per: stage,", "{per: layer,"), "bad.yaml: knobs.k.per: 'layer' is not allowed; allowed: stage, block"),
        (
            ("  routing: {choices: [softmax, relu_l1]}", "  routing: {choices: [softmax]}\n  experts: {choices: [0]}"),
            "bad.yaml: knobs.experts.choices: 0 is not a positive integer",
        ),
        (
            ("  routing: {choices: [softmax, relu_l1]}", "  routing: {choices: [softmax]}\n  experts: {choices: [3]}"),
            "bad.yaml: knobs.experts.choices: experts=3; allowed: 1, 2, 4, 8, 16, 32",
        ),
        (("dataset: easy-vqa", "dataset: imagenet"), "bad.yaml: proxy.dataset: 'imagenet' is not a dataset"),
        (("depth: [1, 1, 1]", "depth: [1, 1]"), "bad.yaml: proxy.depth: expected a list of 3 block counts"),
        (("model: clevr_cnn", "model: vgg"), "bad.yaml: target.model: 'vgg' is not a model; allowed:"),
        (("  routing: {choices: [softmax, relu_l1]}", ""), "bad.yaml: knobs.routing: searching k needs a routing"),
        (("{per: stage, min: 2", "{stages: [], min: 2"), "bad.yaml: knobs.k.stages: expected a non-empty list"),
        (("{choices: [softmax, relu_l1]}", "{choices: [constant]}"), "is not a routing function that ranks"),
        (("width: 0.5", "width: 2"), "bad.yaml: proxy.width: expected a number in (0, 1], got 2"),
        (
            ("dataset: easy-vqa", "dataset: 'sort-of-clevr:train=5'"),
            "bad.yaml: proxy.dataset: sort-of-clevr: train=5 leaves no validation images",
        ),
        (
            ("dataset: easy-vqa", "dataset: 'sort-of-clevr:size=5'"),
            "bad.yaml: proxy.dataset: sort-of-clevr: option 'size=5'; expected train=N, test=M or seed=S",
        ),
        (("dataset: easy-vqa", "dataset: 'digits:x=1'"), "bad.yaml: proxy.dataset: 'digits:x=1' is not a dataset"),
        (("dataset: easy-vqa", "dataset: [1]"), "bad.yaml: proxy.dataset: [1] is not a dataset"),
        (
            ("  routing: {choices: [softmax, relu_l1]}", "  routing: {choices: [softmax, relu_l1], shared: 1}"),
            "bad.yaml: knobs.routing.shared: expected true or false, got 1",
        ),
    ],
)
def test_bad_spaces_name_file_key_and_allowed_values(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    assert message in _error(GOOD.replace(old, new))


def test_a_proxy_dataset_may_carry_sort_of_clevr_sizes() -> None:
    text = GOOD.replace("dataset: easy-vqa", "dataset: 'sort-of-clevr:train=300,test=50'")
    assert parse_space(text, "x.yaml").proxy.dataset == "sort-of-clevr:train=300,test=50"


def test_structural_errors() -> None:
    assert _error("- a list") == "bad.yaml: (top level): expected a mapping, got list"
    assert _error("name: x\ntarget: {model: clevr_cnn}\n") == "bad.yaml: knobs: required key is missing"
    assert "fan_in=9 exceeds cardinality 8" in _error(
        "name: g\ntarget: {model: gateconnect_cifar}\nknobs:\n  fan_in: {choices: [9]}\n"
    )
    assert "a GateConnect stage takes neither top-k nor experts" in _error(
        "name: g\ntarget: {model: gateconnect_cifar}\nknobs:\n  fan_in: {}\n  experts: {}\n"
    )
    with pytest.raises(
        ConfigError, match="unknown space 'nope'; known: clevr, condconv_mobilenet_v1, default, gateconnect_cifar"
    ):
        get_space("nope")
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read the space file"):
        get_space("missing.yaml")


def test_condconv_space_sets_network_wide_experts_and_routing() -> None:
    space = get_space("condconv_mobilenet_v1")
    assert space.parameters() == {
        "condconv.experts": (1, 2, 4, 8, 16, 32),
        "condconv.routing": ("sigmoid", "softmax", "relu_l1"),
    }
    target = space.target_config({"condconv.experts": 8, "condconv.routing": "softmax"})
    assert (target.width, target.experts, target.routing) == (0.5, 8, "softmax")
    assert round(count(target).executed_macs / 1e6) == 160  # seed 001, Table 1: 160M MADDs at 8 experts
    proxy = space.proxy_config({"condconv.experts": 8})
    assert (proxy.width, proxy.input_size, proxy.num_classes) == (0.25, 32, 10)
    bad = "name: c\ntarget: {model: cc_mobilenet_v1}\nknobs:\n  k: {}\n"
    assert _error(bad) == "bad.yaml: knobs.k: k is not a knob of this target; knobs: experts, routing"
    bad = "name: c\ntarget: {model: cc_mobilenet_v1}\nproxy: {depth: [1]}\nknobs:\n  experts: {}\n"
    assert "proxy.depth: a CondConv network keeps its depth" in _error(bad)


def test_set_shorthands_expand_to_every_stage_or_block() -> None:
    clevr = get_space("clevr")  # k per block, routing per stage
    assert clevr.expand({"k": 6}) == {"conv2.0.k": 6, "conv3.0.k": 6, "conv4.0.k": 6}
    default = get_space("default")  # later keys win over earlier ones
    assert default.expand({"k": 16, "conv3.k": 8}) == {"conv2.k": 16, "conv3.k": 8, "conv4.k": 16, "conv5.k": 16}
    with pytest.raises(ConfigError, match="unknown parameter 'fan_in'"):
        default.expand({"fan_in": 2})
