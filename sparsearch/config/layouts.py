"""Registered layouts: seed layouts of the sparse ResNeXt family and seed 001's CondConv networks.

- ``resnext``: the ImageNet ResNeXt family (depth, cardinality, width as arguments), with
  ``resnext50_32x4d``, ``resnext101_32x8d`` and ``resnext101_64x4d`` as torchvision names them;
- ``resnext101_32x4d``: the VQA backbone (seed 000, Table 3), any input size;
- ``clevr_cnn``: the CLEVR modular CNN (seed 000, Table 4), 128×128 in the paper;
- ``gateconnect_cifar``: GateConnect's CIFAR networks {D, w, C} (seed 003, Table 5);
- ``gateconnect_mini_imagenet``: the same with a max pool after the stem, 84×84 (seed 003, Table 6);
- ``cc_mobilenet_v1``, ``cc_mobilenet_v2``, ``cc_resnet50``: seed 001's CondConv networks.

``layout(name, **arguments)`` gives the configuration; the modules are built by :mod:`sparsearch.models`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields, replace

from sparsearch.config.condnet import CondNetConfig
from sparsearch.config.family import KNOBS, NetworkFamily
from sparsearch.config.resnext import NetConfig, StageConfig
from sparsearch.errors import ConfigError

__all__ = [
    "clevr_cnn",
    "gateconnect_cifar",
    "gateconnect_mini_imagenet",
    "layout",
    "layout_arguments",
    "layout_doc",
    "model_names",
    "register_layout",
    "resnext",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
]


_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # blocks per stage


def resnext(
    depth: int | list[int] | tuple[int, ...] = 50,
    cardinality: int = 32,
    width: int = 4,
    input_size: int = 224,
    head: str = "classifier",
    num_classes: int = 1000,
    cond_dim: int | None = None,
) -> NetConfig:
    """The ImageNet ResNeXt family (Xie et al. 2017; torchvision's ``resnext*``): a 7×7 stem and max pool,
    four stages of bottleneck blocks with C paths of width d, 2d, 4d, 8d and outputs 256, 512, 1024,
    2048, stride 2 from conv3. ``depth``: 50, 101, 152 or the blocks of each of the four stages;
    ``width``: d, the path width of conv2 (``resnext50_32x4d`` is C = 32, d = 4)."""
    if isinstance(depth, list | tuple):
        blocks = tuple(depth)
    elif depth in _DEPTHS:
        blocks = _DEPTHS[depth]
    else:
        raise ConfigError(f"depth={depth!r}: one of {', '.join(map(str, _DEPTHS))} or four block counts")
    if len(blocks) != 4:
        raise ConfigError(f"depth={list(blocks)!r}: the ResNeXt family has four stages")
    stages = tuple(
        StageConfig(name, n, out, cardinality, width * 2**i, 1 if i == 0 else 2)
        for i, (name, n, out) in enumerate(
            zip(("conv2", "conv3", "conv4", "conv5"), blocks, (256, 512, 1024, 2048), strict=True)
        )
    )
    return NetConfig(stages, input_size=input_size, head=head, num_classes=num_classes, cond_dim=cond_dim)


def resnext101_32x4d(
    input_size: int = 224,
    head: str = "classifier",
    num_classes: int = 1000,
    cardinality: int = 32,
    cond_dim: int | None = None,
) -> NetConfig:
    """ResNeXt-101 (32×4d): stages of 3, 4, 23, 3 blocks, path widths 4, 8, 16, 32, stride 2 from conv3.

    ``head="features"`` returns the conv5 grid (the VQA backbone: 14×14 at 448×448). Another
    ``cardinality`` keeps C·d = 128 in conv2.
    """
    if not isinstance(cardinality, int) or isinstance(cardinality, bool) or not 1 <= cardinality <= 128:
        raise ConfigError(f"cardinality={cardinality!r} must be an integer in 1..128 (C·d = 128 in conv2)")
    return resnext(101, cardinality, 128 // cardinality, input_size, head, num_classes, cond_dim)


def _fixed(depth: int, cardinality: int, width: int, doc: str) -> Callable[..., NetConfig]:
    def factory(
        input_size: int = 224, head: str = "classifier", num_classes: int = 1000, cond_dim: int | None = None
    ) -> NetConfig:
        return resnext(depth, cardinality, width, input_size, head, num_classes, cond_dim)

    factory.__doc__ = doc
    return factory


resnext50_32x4d = _fixed(50, 32, 4, "ResNeXt-50 (32×4d): torchvision's resnext50_32x4d (25.03 M params, 4.23 GMACs).")
resnext101_32x8d = _fixed(101, 32, 8, "ResNeXt-101 (32×8d): torchvision's resnext101_32x8d (88.79 M, 16.41 GMACs).")
resnext101_64x4d = _fixed(101, 64, 4, "ResNeXt-101 (64×4d): torchvision's resnext101_64x4d (83.46 M, 15.46 GMACs).")


def clevr_cnn(input_size: int = 128, cardinality: int = 12, cond_dim: int | None = None) -> NetConfig:
    """Modular CNN of the CLEVR model: 3×3 stem of 64 (stride 2) + max pool, three one-block stages of
    48 channels (C = 12 paths of width 4; stride 2 in conv3 and conv4), a 1×1 convolution to 24."""
    d = 48 // cardinality
    if d * cardinality != 48:
        raise ConfigError(f"cardinality={cardinality} must divide the 48 channels of the CLEVR CNN")
    stages = tuple(
        StageConfig(name, 1, 48, cardinality, d, stride) for name, stride in (("conv2", 1), ("conv3", 2), ("conv4", 2))
    )
    return NetConfig(
        stages, input_size=input_size, stem_kernel=3, stem_stride=2, head="conv", head_channels=24, cond_dim=cond_dim
    )


_CIFAR_DEPTHS = {20: 2, 29: 3}  # D = 2 + 3·M: modules per stage (3 stages)


def gateconnect_cifar(
    depth: int = 29,
    width: int = 8,
    cardinality: int = 8,
    num_classes: int = 100,
    fan_in: int | None = None,
    input_size: int = 32,
) -> NetConfig:
    """GateConnect's CIFAR network {D, w, C}: a 3×3 stem, three stages of M/3 modules, path widths
    w, 2w, 4w; outputs 64, 128, 256 (256, 512, 1024 and a 64-channel stem for w = 64, which is
    ResNeXt-29 8×64d). ``fan_in`` makes every stage a GateConnect stage."""
    if depth not in _CIFAR_DEPTHS:
        raise ConfigError(f"depth={depth} not in the seed's CIFAR layouts; allowed: 20, 29")
    per_stage = _CIFAR_DEPTHS[depth]
    stem, base = (64, 256) if width == 64 else (16, 64)
    stages = tuple(
        StageConfig(
            f"stage{i + 1}", per_stage, base * 2**i, cardinality, width * 2**i, 1 if i == 0 else 2, fan_in=fan_in
        )
        for i in range(3)
    )
    return NetConfig(
        stages,
        input_size=input_size,
        stem_channels=stem,
        stem_kernel=3,
        stem_stride=1,
        stem_pool=False,
        num_classes=num_classes,
    )


def gateconnect_mini_imagenet(
    depth: int = 29,
    width: int = 8,
    cardinality: int = 8,
    num_classes: int = 100,
    fan_in: int | None = None,
    input_size: int = 84,
) -> NetConfig:
    """Seed 003's Mini-ImageNet networks: the CIFAR layout with a 3×3 max pool after the stem."""
    config = gateconnect_cifar(depth, width, cardinality, num_classes, fan_in, input_size)
    return replace(config, stem_pool=True)


_LAYOUTS: dict[str, Callable[..., NetworkFamily]] = {}


def register_layout(name: str, factory: Callable[..., NetworkFamily]) -> None:
    """Register a function returning a configuration of any family (:class:`NetworkFamily`) under ``name``."""
    if name in _LAYOUTS:
        raise ValueError(f"layout {name!r} is already registered")
    _LAYOUTS[name] = factory


def model_names() -> list[str]:
    return sorted(_LAYOUTS)


def _factory(name: str) -> Callable[..., NetworkFamily]:
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(model_names())}") from None


def layout(name: str, **config: object) -> NetworkFamily:
    """The configuration of layout ``name``. Knob arguments (k, experts, routing, fan_in) are applied
    with the family's ``with_knobs`` (per stage for the ResNeXt family, network-wide for the CondConv
    networks); the rest go to the layout's factory."""
    factory = _factory(name)
    knobs = {key: config.pop(key) for key in KNOBS if key in config}
    try:
        net = factory(**config)
    except TypeError as err:  # an argument the layout does not take
        raise ConfigError(f"model {name!r}: {err}") from None
    if not knobs:
        return net
    takes = {knob for unit in net.knob_units() for knob in unit.knobs}
    unknown = [key for key in KNOBS if key in knobs and key not in takes]
    if unknown:
        its = ", ".join(k for k in KNOBS if k in takes)
        raise ConfigError(f"model {name!r} has no knob {unknown[0]!r}; its knobs: {its}")
    return net.with_knobs(**knobs)


def layout_arguments(name: str) -> list[tuple[str, object]]:
    """(argument, default) of layout ``name``, knobs excluded; the default is ``inspect.Parameter.empty``
    for a required argument."""
    factory = _factory(name)
    arguments = getattr(factory, "arguments", None)
    if arguments is not None:
        return list(arguments)
    return [
        (p.name, p.default)
        for p in inspect.signature(factory).parameters.values()
        if p.name not in KNOBS and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def layout_doc(name: str) -> str:
    """The docstring of layout ``name``'s factory ("" when it has none)."""
    return inspect.getdoc(_factory(name)) or ""


def _condnet(arch: str) -> Callable[..., CondNetConfig]:
    def factory(**config: object) -> CondNetConfig:
        return CondNetConfig(arch, **config)  # type: ignore[arg-type]

    factory.__doc__ = f"Seed 001's CondConv {arch} (experts=1: the base network)."
    factory.arguments = [  # type: ignore[attr-defined]
        (f.name, f.default) for f in fields(CondNetConfig) if f.name not in {*KNOBS, "arch"}
    ]
    return factory


register_layout("resnext", resnext)
register_layout("resnext50_32x4d", resnext50_32x4d)
register_layout("resnext101_32x4d", resnext101_32x4d)
register_layout("resnext101_32x8d", resnext101_32x8d)
register_layout("resnext101_64x4d", resnext101_64x4d)
register_layout("clevr_cnn", clevr_cnn)
register_layout("gateconnect_cifar", gateconnect_cifar)
register_layout("gateconnect_mini_imagenet", gateconnect_mini_imagenet)
for _name, _arch in {
    "cc_mobilenet_v1": "mobilenet_v1",
    "cc_mobilenet_v2": "mobilenet_v2",
    "cc_resnet50": "resnet50",
}.items():
    register_layout(_name, _condnet(_arch))
