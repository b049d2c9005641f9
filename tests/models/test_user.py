"""A user's network from its model factory: converted with its weights, counted three ways, searched
through a space, saved, pruned; imported only when trusted; every mistake a one-line error."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pytest
import torch
from torch import nn

from sparsearch.config import UserNetConfig, config_from_dict, config_to_dict, trust_factory
from sparsearch.cost import count
from sparsearch.cost.verify import verify_config
from sparsearch.errors import ConfigError
from sparsearch.models import build_model
from sparsearch.models.user import UserNetwork, build_user_model, conversion_report, measure_user_net
from sparsearch.spaces import parse_space
from tests.models.test_convert import ResNeXt, _randomised

HERE = "tests.models.test_user"
SMALL = f"{HERE}:make_small"


def make_small(num_classes: int, in_channels: int) -> nn.Module:
    """A torchvision-named ResNeXt with fixed 'pretrained' weights and batch-norm statistics."""
    torch.manual_seed(1234)
    return _randomised(ResNeXt([2, 1, 1, 1], groups=4, width_per_group=4, num_classes=num_classes)).train()


def returns_a_number(num_classes: int, in_channels: int) -> int:
    return 3


def raises(num_classes: int, in_channels: int) -> nn.Module:
    raise RuntimeError("weights file missing\nsecond line")


def wrong_output(num_classes: int, in_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.Flatten())


def no_grouped_block(num_classes: int, in_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
    )


def old_signature() -> nn.Module:
    return make_small(10, 3)


for _name in ("make_small", "returns_a_number", "raises", "wrong_output", "no_grouped_block", "old_signature"):
    trust_factory(f"{HERE}:{_name}")
trust_factory("no_such_module_here:make")
trust_factory(f"{HERE}:not_a_function")


@pytest.fixture(scope="module")
def small() -> UserNetConfig:
    return measure_user_net(SMALL, 32, 3, 10)[0]


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return copy.deepcopy(model).double().eval()(x)


@pytest.mark.parametrize("routing", ["constant", "softmax", "sigmoid", "relu_l1", "noisy_topk"])
def test_at_k_equal_c_the_network_is_the_factory_model_for_every_gate(small, routing) -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected = _outputs(make_small(10, 3), x)
    built = build_user_model(small.with_knobs(routing=routing))
    assert isinstance(built, UserNetwork) and [b.name for b in small.blocks] == list(built.blocks())
    assert float((_outputs(built, x) - expected).abs().max()) <= 1e-9


def test_the_blocks_and_their_stages_are_found_by_name(small) -> None:
    assert [(b.name, b.stage, b.cardinality) for b in small.blocks] == [
        ("layer1.0", "layer1", 4),
        ("layer1.1", "layer1", 4),
        ("layer2.0", "layer2", 4),
        ("layer3.0", "layer3", 4),
        ("layer4.0", "layer4", 4),
    ]
    assert [(s.name, s.depth) for s in small.stages] == [("layer1", 2), ("layer2", 1), ("layer3", 1), ("layer4", 1)]


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"k": 2, "routing": "softmax"},
        {"k": {"layer1": (1, 3), "layer4": 2}, "routing": "sigmoid"},
        {"k": 1, "routing": "noisy_topk"},
    ],
)
def test_costs_agree_three_ways(small, knobs) -> None:
    counts = verify_config(small.with_knobs(**knobs))
    assert counts["analytic_flops"] == counts["flop_counter_flops"] == counts["thop_flops"]


def test_parameters_counted_equal_the_built_model(small) -> None:
    config = small.with_knobs(k=2, routing="relu_l1")
    assert count(config).params == sum(p.numel() for p in build_model(config).parameters())
    assert count(config).executed_flops < count(small).executed_flops


def test_the_configuration_round_trips_and_hostile_records_are_refused(small) -> None:
    config = small.with_knobs(k=3, routing="softmax")
    assert config_from_dict(config_to_dict(config)) == config
    good = config_to_dict(config)
    for bad, message in [
        ({**good, "factory": "os:system; rm"}, "module:function"),
        ({**good, "blocks": "many"}, "blocks"),
        ({**good, "blocks": [{**good["blocks"][0], "k": 99}]}, "k=99"),
        ({**good, "blocks": [{**good["blocks"][0], "cardinality": -1}]}, "cardinality"),
        ({**good, "blocks": [{**good["blocks"][0], "routing": "constant", "k": 1}]}, "routing that ranks"),
        ({**good, "rest_macs": -5}, "rest_macs"),
        ({**good, "surprise": 1}, "surprise"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
            config_from_dict(bad)
        assert "\n" not in str(err.value)


def test_an_untrusted_factory_is_never_imported(small) -> None:
    record = {**config_to_dict(small), "factory": f"{HERE}:never_trusted"}
    config = config_from_dict(record)  # reading the record imports nothing
    with pytest.raises(ConfigError, match=r"sparsearch --factory tests.models.test_user:never_trusted"):
        build_model(config)
    text = f"name: s\ntarget: {{factory: '{HERE}:never_trusted', input_size: 32}}\nknobs: {{k: {{}}, routing: {{}}}}\n"
    with pytest.raises(ConfigError, match=r"target.factory: .* runs your code; name it"):
        parse_space(text, "stored")


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_such_module_here:make", "cannot import 'no_such_module_here'"),
        (f"{HERE}:not_a_function", "has no function 'not_a_function'"),
        (f"{HERE}:returns_a_number", "returned int, not an nn.Module"),
        (f"{HERE}:raises", "failed: RuntimeError: weights file missing (the contract"),
        (f"{HERE}:old_signature", "failed: TypeError"),
        (f"{HERE}:wrong_output", "no grouped bottleneck"),
        (f"{HERE}:no_grouped_block", "no grouped bottleneck to search (no grouped 3×3"),
    ],
)
def test_a_broken_factory_gets_one_line(factory, message) -> None:
    with pytest.raises(ConfigError) as err:
        measure_user_net(factory, 32, 3, 10)
    assert message in str(err.value) and "\n" not in str(err.value)


SPACE = f"""
name: small_user
target: {{factory: "{SMALL}", input_size: 32, num_classes: 10}}
proxy: {{dataset: digits, input_size: 24, epochs: 1}}
knobs:
  k: {{per: block, min: 1, max: cardinality, stages: [layer1, layer4]}}
  routing: {{per: stage, choices: [softmax, sigmoid], stages: [layer1, layer4]}}
"""


def test_a_space_on_a_factory_searches_its_blocks() -> None:
    space = parse_space(SPACE, "small.yaml", trust=True)
    assert space.factory == SMALL
    assert set(space.parameters()) == {
        "layer1.0.k",
        "layer1.1.k",
        "layer4.0.k",
        "layer1.routing",
        "layer4.routing",
    }
    values = space.expand({"layer1.0.k": 1, "layer4.k": 2, "routing": "softmax"})
    target = space.target_config(values)
    assert [(b.k, b.routing) for b in target.blocks] == [
        (1, "softmax"),
        (4, "softmax"),
        (4, "constant"),
        (4, "constant"),
        (2, "softmax"),
    ]
    proxy = space.proxy_config(values)
    assert proxy.input_size == 24 and proxy.blocks[0].in_size == (6, 6) and target.blocks[0].in_size == (8, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("proxy: {width: 0.5}", "proxy.width: a user's network keeps its shape"),
        ("proxy: {pretrained: maybe}", "proxy.pretrained: expected true or false"),
        ("knobs: {experts: {choices: [1, 2]}}", "knobs.experts: experts is not a knob of this target"),
        ("knobs: {k: {max: 9}, routing: {}}", "k=9 exceeds cardinality 4"),
        ("target: {factory: 'x y:z', input_size: 32}", "target.factory: expected module:function"),
        ("target: {factory: '" + SMALL + "'}", "target.input_size: required key is missing"),
    ],
)
def test_factory_space_mistakes_name_the_key(change, message) -> None:
    base = {
        "name": "s",
        "target": f"{{factory: '{SMALL}', input_size: 32, num_classes: 10}}",
        "knobs": "{k: {}, routing: {}}",
    }
    key, _, value = change.partition(": ")
    base[key] = value
    text = "\n".join(f"{k}: {v}" for k, v in base.items())
    with pytest.raises(ConfigError) as err:
        parse_space(text, "s.yaml", trust=True)
    assert message in str(err.value), str(err.value)


def test_a_layout_space_refuses_pretrained() -> None:
    text = "name: s\ntarget: {model: resnext50_32x4d}\nproxy: {pretrained: true}\nknobs: {experts: {}}\n"
    with pytest.raises(ConfigError, match=r"proxy\.pretrained: applies to a user's network"):
        parse_space(text, "s.yaml")


def test_the_conversion_report_lists_blocks_and_gates() -> None:
    report, config = conversion_report(SMALL, 32, 3, 10, ("softmax", "sigmoid"))
    assert [b.name for b in config.blocks] == [b["module"] for b in report["blocks"]]
    assert report["converted"] == 5 and report["left"] == 0
    assert all(b["max_abs_diff"] <= 1e-9 for b in report["blocks"])
    assert all(diff <= 1e-9 for diff in report["routings"].values())


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_a_trained_factory_network_saves_loads_and_prunes_exactly(tmp_path) -> None:
    from sparsearch.compact.prune import PruneSettings, prune_checkpoint
    from sparsearch.train import default_settings, train_space
    from sparsearch.train.checkpoint import load_checkpoint

    space = parse_space(SPACE, "small.yaml", trust=True)
    values = space.expand({"k": 2, "routing": "softmax"})
    settings = default_settings("classification", epochs=1, steps_per_epoch=3, lr=0.01, seed=0)
    cpu = torch.device("cpu")
    result = train_space(space, values, settings, cpu, out=tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", cpu)
    assert isinstance(loaded.model, UserNetwork)
    assert [b.k for b in loaded.model.blocks().values()] == [2, 2, 4, 4, 2]
    report = prune_checkpoint(tmp_path / "ckpt", tmp_path / "small", PruneSettings(calib_batches=2), cpu)
    assert report["equivalence"]["exact"] and report["equivalence"]["max_abs_diff"] <= 1e-9
    assert report["costs"]["after"]["params"] < report["costs"]["before"]["params"]
    compact = load_checkpoint(tmp_path / "small", cpu).model
    assert sum(p.numel() for p in compact.parameters()) == report["costs"]["after"]["params"]
    exported = torch.export.load(str(tmp_path / "small" / "model.pt2")).module()
    x = torch.randn(3, 3, 24, 24)
    with torch.no_grad():
        assert float((exported(x) - compact.eval()(x)).abs().max()) <= 1e-4
    assert result.metrics["val_accuracy"] >= 0
    assert asdict(space.proxy)["pretrained"] is True


def make_resnext50(num_classes: int, in_channels: int) -> nn.Module:
    torch.manual_seed(0)
    return ResNeXt([3, 4, 6, 3], groups=32, width_per_group=4, num_classes=num_classes)


trust_factory(f"{HERE}:make_resnext50")


def test_a_torchvision_resnext50_through_a_factory_counts_as_published() -> None:
    config, report = measure_user_net(f"{HERE}:make_resnext50", 224, 3, 1000)
    assert sum(r.converted for r in report) == 16 and not [r for r in report if not r.converted]
    assert count(config).params == 25_028_904  # torchvision's resnext50_32x4d, exactly
    assert round(count(config).executed_macs / 1e9, 2) == 4.23  # its published GMACs
    counts = verify_config(config.with_knobs(k=16, routing="softmax"))
    assert counts["analytic_flops"] == counts["flop_counter_flops"] == counts["thop_flops"] == 4_711_043_072
