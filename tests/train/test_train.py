from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sparsearch.data import load_data
from sparsearch.layers import GateConnectModule
from sparsearch.spaces import get_space
from sparsearch.train import (
    TrainingError,
    build_task_model,
    default_settings,
    fit,
    load_checkpoint,
    train_space,
)
from sparsearch.train.run import model_spec, network_config
from tests.cifar_files import make_cifar

CPU = torch.device("cpu")


def _loss_before_after(space: str, values: dict, data: str, steps: int, **settings: object) -> tuple[float, float]:
    """Mean training loss of the first and of the last three steps of a ``steps``-step run."""
    chosen = get_space(space)
    config = network_config(chosen, chosen.expand(values), "proxy", None)
    datasets = load_data(data, input_size=config.input_size, seed=0, val_fraction=settings.get("val_fraction", 0.1))
    task = datasets.task
    s = default_settings(task, steps_per_epoch=steps, **settings)
    per_epoch = min(steps, math.ceil(len(datasets.train) / s.batch_size))
    s = replace(s, epochs=math.ceil(steps / per_epoch), steps_per_epoch=per_epoch)
    steps = s.epochs * per_epoch
    model = build_task_model(model_spec(config, datasets, s))
    losses: list[float] = []
    fit(model, datasets, s, CPU, on_step=lambda info: losses.append(info.batch_loss))
    assert len(losses) == steps
    return sum(losses[:3]) / 3, sum(losses[-3:]) / 3


@pytest.fixture
def plugin(user_module) -> str:
    module = user_module(
        "bright_pixel_data",
        """
        import torch

        def make_datasets(input_size, seed):
            g = torch.Generator().manual_seed(seed)
            labels = torch.arange(200) % 4
            images = torch.rand(200, 3, 16, 16, generator=g) * 0.2
            images[torch.arange(200), :, 4 * labels, 4 * labels] = 1.0
            return (images[:160], labels[:160]), (images[160:], labels[160:])
        """,
    )
    return f"{module}:make_datasets"


@pytest.mark.parametrize(
    ("space", "values", "data", "steps", "settings"),
    [
        # a small validation split: its evaluation after the epoch is most of the time of the deep proxy
        ("default", {"k": 8, "routing": "relu_l1", "conv4.experts": 2}, "easy-vqa", 12, {"val_fraction": 0.02}),
        ("gateconnect_cifar", {"fan_in": 2}, "digits", 40, {"batch_size": 32}),
        ("condconv_mobilenet_v1", {"experts": 4}, "cifar10", 12, {"batch_size": 16, "lr": 0.02}),
        ("gateconnect_cifar", {"stage3.fan_in": 4}, "cifar100", 12, {"batch_size": 16}),
        ("gateconnect_cifar", {}, "plugin", 15, {"batch_size": 32}),
    ],
    ids=["easy-vqa", "digits", "cifar10", "cifar100", "plugin"],
)
def test_loss_falls_on_each_builtin_dataset(
    tmp_path: Path, plugin: str, space: str, values: dict, data: str, steps: int, settings: dict
) -> None:
    if data.startswith("cifar"):
        data = f"{data}:{make_cifar(tmp_path / data, data, per_class=12)}"
    elif data == "plugin":
        data = plugin
    before, after = _loss_before_after(space, values, data, steps, **settings)
    assert after < 0.9 * before, (before, after)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A briefly trained VQA model with top-k, CondConv experts and question-conditioned gates."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    space = get_space("default")
    values = space.expand({"k": 8, "routing": "relu_l1", "conv3.experts": 2})
    # a small validation split: its two passes (after the epoch, and for usage) are most of the time
    settings = default_settings("vqa", epochs=1, steps_per_epoch=4, batch_size=32, val_fraction=0.02)
    result = train_space(space, values, settings, CPU, out=out)
    return result, out


def test_checkpoint_round_trips_exactly(trained) -> None:
    result, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(out)
    original = result.model.state_dict()
    restored = loaded.model.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, restored[key]), key
    data = load_data("easy-vqa", input_size=64, vocab=loaded.spec.vocab)
    batch = data.test.batch(torch.arange(64))
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(
            result.model(batch.images, batch.tokens, batch.lengths),
            loaded.model(batch.images, batch.tokens, batch.lengths),
        )
    meta = loaded.meta.record
    assert meta["space"]["name"] == "default" and meta["data"]["spec"] == "easy-vqa"
    assert meta["metrics"]["val_accuracy"] == result.val.accuracy
    assert set(meta["versions"]) >= {"sparsearch", "torch", "python"}


def test_usage_statistics_count_every_selection(trained) -> None:
    result, out = trained
    usage = load_checkpoint(out).meta.usage
    examples = result.val.examples
    assert len(usage["topk"]) == 11  # the proxy's blocks: depth [1, 1, 8, 1]
    for stats in usage["topk"].values():
        assert stats["examples"] == examples
        assert sum(stats["selected"]) == stats["k"] * examples
    (experts,) = [v for k, v in usage["experts"].items() if "conv3" in k]
    assert experts["experts"] == 2 and experts["examples"] == examples
    assert all(0 <= m <= 1 for m in experts["mean"])  # sigmoid routing


def test_training_is_repeatable_on_cpu() -> None:
    space = get_space("gateconnect_cifar")
    values = space.expand({"fan_in": 2})
    settings = default_settings("classification", epochs=1, steps_per_epoch=5, batch_size=32)
    first = train_space(space, values, settings, CPU)
    second = train_space(space, values, settings, CPU)
    for (key, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    third = train_space(space, values, replace(settings, seed=1), CPU)
    assert not torch.equal(first.model.state_dict()["stem.0.weight"], third.model.state_dict()["stem.0.weight"])


def test_gateconnect_phases_learn_the_gates_then_freeze_them() -> None:
    space = get_space("gateconnect_cifar")
    config = network_config(space, space.expand({"fan_in": 1}), "proxy", None)
    data = load_data("digits", input_size=config.input_size)
    settings = default_settings("classification", epochs=2, steps_per_epoch=8, batch_size=32)
    model = build_task_model(model_spec(config, data, settings))
    modules = [m for m in model.modules() if isinstance(m, GateConnectModule) and m.num_inputs > 1]
    assert modules and not any(m.frozen for m in modules)
    history = fit(model, data, settings, CPU)
    assert all(m.frozen for m in modules)
    assert any(not torch.all(m.gates == 0.5) for m in modules)  # phase 1 moved the gates
    for m in modules:
        assert m.connectivity_matrix().sum(1).eq(1).all()  # K = 1 input per branch
        assert torch.all((m.gates >= m.gate_floor) & (m.gates <= 1))
    # Phases 3 and 4 run at 0.1x and 0.01x: the last step's rate is the base rate x 0.01.
    assert math.isclose(history[-1].lr, settings.lr * 0.01)


def test_fixed_random_connectivity_is_the_baseline_option() -> None:
    space = get_space("gateconnect_cifar")
    settings = default_settings("classification", epochs=1, steps_per_epoch=2, batch_size=32)
    result = train_space(space, space.expand({"fan_in": 2}), settings, CPU, connectivity="fixed_random")
    modules = [m for m in result.model.modules() if isinstance(m, GateConnectModule) and m.num_inputs > 1]
    assert modules and all(m.connectivity == "fixed_random" and m.frozen for m in modules)
    assert all(torch.all(m.gates == 0.5) for m in modules)  # never learned


def test_a_non_finite_loss_stops_training_with_the_step() -> None:
    space = get_space("gateconnect_cifar")
    config = network_config(space, {}, "proxy", None)
    data = load_data("digits", input_size=config.input_size)
    settings = default_settings("classification", epochs=1, steps_per_epoch=3, batch_size=32)
    model = build_task_model(model_spec(config, data, settings))
    with torch.no_grad():
        model.head[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 1"):
        fit(model, data, settings, CPU)


def test_the_same_seed_gives_the_same_weights_with_several_threads() -> None:
    """The sparse top-k backward adds gathered rows; with 2+ threads only the deterministic kernels keep
    the order, and the mode the caller had is restored after training."""
    import sparsearch

    space = sparsearch.get_space("gateconnect_digits")
    values = space.expand({"k": 4, "fan_in": 2, "routing": "softmax"})  # k < C: the sparse top-k block
    settings = default_settings("classification", epochs=1, seed=0, steps_per_epoch=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        runs = [sparsearch.train_space(space, values, settings, "cpu").model.state_dict() for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.are_deterministic_algorithms_enabled()
