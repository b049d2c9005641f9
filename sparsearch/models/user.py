"""A user's network from its model factory: imported, converted, measured and built with its knobs.

The factory contract: ``make_model(num_classes: int, in_channels: int) -> nn.Module``, a classifier
whose forward takes images (B, in_channels, H, W) and returns logits (B, num_classes), with the user's
pretrained weights loaded (as ``timm.create_model(name, pretrained=True, num_classes=...)`` does). Its
grouped bottlenecks become top-k blocks (:func:`~sparsearch.models.convert.convert_bottlenecks`); the
rest of the network is kept as it is and counted with FlopCounterMode.

The factory module is found on ``sys.path`` or in the current directory, and imported only when trusted
(:func:`sparsearch.config.trust_factory`: the user named it).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.config import UserBlock, UserNetConfig, is_trusted
from sparsearch.errors import ConfigError
from sparsearch.layers import TopKBottleneck
from sparsearch.limits import shown
from sparsearch.models.convert import Converted, convert_bottlenecks, set_routing
from sparsearch.models.network import Network
from sparsearch.models.registry import register_builder
from sparsearch.user_code import call_user_function

__all__ = ["UserNetwork", "build_user_model", "call_factory", "conversion_report", "measure_user_net", "refit"]

CONTRACT = "make_model(num_classes, in_channels) -> nn.Module"


def call_factory(spec: str, num_classes: int, in_channels: int) -> nn.Module:
    """The user's model from the factory ``spec`` (which must be trusted)."""
    if not is_trusted(spec):
        raise ConfigError(
            f"the model comes from the factory {spec!r}, which runs your code: name it to allow it "
            f"(sparsearch --factory {spec} ...)"
        )
    model = call_user_function(spec, "model factory", CONTRACT, num_classes=num_classes, in_channels=in_channels)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {spec!r} returned {type(model).__name__}, not an nn.Module ({CONTRACT})")
    return model


class UserNetwork(Network):
    """The user's converted model (``net``) with the configuration it was built from."""

    def __init__(self, config: UserNetConfig, net: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def blocks(self) -> dict[str, TopKBottleneck]:
        """The converted blocks by their names in the user's model (as in ``config.blocks``)."""
        return {b.name: self.net.get_submodule(b.name) for b in self.config.blocks}

    def set_knobs(self, config: UserNetConfig) -> None:
        """The k of ``config`` on every converted block."""
        for b, block in zip(config.blocks, self.blocks().values(), strict=True):
            block.set_k(b.k)


def _reinitialise(net: nn.Module) -> None:
    for module in net.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def _converted(spec: str, report: list[Converted]) -> list[str]:
    names = [r.module for r in report if r.converted]
    if not names:
        why = next((f"{r.module}: {r.detail}" for r in report), "no grouped 3×3 convolution in the model")
        raise ConfigError(f"model factory {spec!r}: no grouped bottleneck to search ({why})")
    return names


def measure_user_net(
    spec: str, input_size: int, in_channels: int = 3, num_classes: int = 1000, pretrained: bool = True
) -> tuple[UserNetConfig, list[Converted]]:
    """Build the factory's model, convert it and measure it at ``input_size``: the configuration (every
    knob off) and the conversion report, block by block."""
    net = call_factory(spec, num_classes, in_channels).eval()
    report = convert_bottlenecks(net)
    names = _converted(spec, report)
    inputs: dict[str, Tensor] = {}
    sizes: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: Tensor) -> None:
            inputs[name] = args[0].detach()
            sizes[name] = (tuple(args[0].shape[2:]), tuple(out.shape[2:]))

        return record

    handles = [net.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    x = torch.zeros(1, in_channels, input_size, input_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = net(x)
    except Exception as err:  # the user's forward, at a size or channel count it does not take
        raise ConfigError(
            f"model factory {spec!r}: its model fails on a {in_channels}×{input_size}×{input_size} input "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
        ) from None
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model factory {spec!r}: its model returns {shown(got)}, expected logits (1, {num_classes})")
    total = counter.get_total_flops()
    block_flops = block_params = 0
    blocks = []
    for name in names:
        module = net.get_submodule(name)
        with torch.no_grad(), FlopCounterMode(display=False) as one:
            module(inputs[name])
        block_flops += one.get_total_flops()
        block_params += sum(p.numel() for p in module.parameters())
        (in_size, out_size) = sizes[name]
        blocks.append(
            UserBlock(
                name,
                name.rpartition(".")[0] or name,
                module.in_channels,
                module.out_channels,
                module.cardinality,
                module.width,
                module.stride,
                in_size,
                out_size,
            )
        )
    config = UserNetConfig(
        spec,
        input_size,
        in_channels,
        num_classes,
        pretrained,
        tuple(blocks),
        (total - block_flops) // 2,
        sum(p.numel() for p in net.parameters()) - block_params,
    )
    return config, report


def refit(config: UserNetConfig, num_classes: int, in_channels: int) -> UserNetConfig:
    """``config`` for data of ``num_classes`` classes and ``in_channels`` channels: measured again (the
    classifier and the stem change) when they differ, with the same knobs."""
    if (config.num_classes, config.in_channels) == (num_classes, in_channels):
        return config
    fresh, _ = measure_user_net(config.factory, config.input_size, in_channels, num_classes, config.pretrained)
    if [b.name for b in fresh.blocks] != [b.name for b in config.blocks]:
        raise ConfigError(
            f"model factory {config.factory!r}: other blocks at {num_classes} classes, {in_channels} channels"
        )
    blocks = tuple(
        replace(new, k=old.k, routing=old.routing) for new, old in zip(fresh.blocks, config.blocks, strict=True)
    )
    return replace(fresh, blocks=blocks)


def build_user_model(config: UserNetConfig) -> UserNetwork:
    """The factory's model, converted, with the knobs of ``config`` (its weights kept when ``pretrained``)."""
    net = call_factory(config.factory, config.num_classes, config.in_channels)
    if not config.pretrained:
        _reinitialise(net)
    names = _converted(config.factory, convert_bottlenecks(net))
    if names != [b.name for b in config.blocks]:
        raise ConfigError(
            f"model factory {config.factory!r}: its model now has the grouped bottlenecks {names[:4]}..., "
            f"not the {len(config.blocks)} recorded ({config.blocks[0].name}, ...); the factory changed"
        )
    for b in config.blocks:
        block = net.get_submodule(b.name)
        if b.routing != "constant":
            try:
                set_routing(block, b.routing)
            except ValueError as err:
                raise ConfigError(f"block {b.name}: {err}") from None
        if b.k != block.k:
            block.set_k(b.k)
    return UserNetwork(config, net)


def conversion_report(
    spec: str, input_size: int, in_channels: int = 3, num_classes: int = 1000, routings: tuple[str, ...] = ()
) -> tuple[dict, UserNetConfig]:
    """What ``sparsearch convert`` prints: each grouped convolution met, converted (with the float64
    difference of the block at k = C) or left and why, and for each of ``routings`` the largest
    difference of the whole model once every converted block has that gate (zero-initialised); and the
    configuration measured (for its cost)."""
    config, report = measure_user_net(spec, input_size, in_channels, num_classes)
    result = {
        "factory": spec,
        "input_size": input_size,
        "blocks": [
            {"module": r.module, "converted": r.converted, "detail": r.detail, "max_abs_diff": r.max_abs_diff}
            for r in report
        ],
        "converted": sum(r.converted for r in report),
        "left": sum(not r.converted for r in report),
        "routings": {},
    }
    if routings:
        source = call_factory(spec, num_classes, in_channels).double().eval()
        x = torch.randn(
            2, in_channels, input_size, input_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            expected = source(x)
        for routing in routings:
            with_gates = build_user_model(config.with_knobs(routing=routing)).double().eval()
            with torch.no_grad():
                result["routings"][routing] = float((with_gates(x) - expected).abs().max())
    return result, config


register_builder(UserNetConfig, build_user_model, refit=lambda config, fit: refit(config, fit.classes, fit.in_channels))
