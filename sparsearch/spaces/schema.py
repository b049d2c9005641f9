"""Search spaces: a YAML file validated into a :class:`Space`.

A space names the **target** (the layout and input size whose FLOPs the budget constrains), the
**proxy** (how accuracy is estimated on a small machine: dataset, input size, width and depth scale,
epochs) and the **knobs** to search with their ranges::

    name: default
    description: one line for `sparsearch spaces`
    target: {model: resnext101_32x4d, input_size: 448, head: features}
    proxy: {dataset: easy-vqa, input_size: 64, width: 0.25, depth: [1, 1, 2, 1], epochs: 1}
    knobs:
      k: {per: stage, min: 1, max: cardinality}         # top-k paths per example
      experts: {per: stage, choices: [1, 2, 4, 8]}     # CondConv experts
      routing: {per: stage, choices: [softmax, sigmoid, relu_l1, noisy_topk]}
      fan_in: {per: stage, min: 1, max: cardinality, stages: [stage2, stage3]}

Every error names the file and the key, and says what is allowed; unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from sparsearch.errors import ConfigError
from sparsearch.layers import routing_names
from sparsearch.models import NetConfig, layout, model_names
from sparsearch.models.condconv_nets import CondNetConfig

__all__ = ["DATASETS", "KNOBS", "Knob", "Proxy", "Space", "load_space", "parse_space"]

KNOBS = ("k", "experts", "routing", "fan_in")
DATASETS = ("easy-vqa", "digits", "cifar10", "cifar100")
EXPERT_COUNTS = (1, 2, 4, 8, 16, 32)  # seed 001's expert counts
_TOP = {"name", "description", "target", "proxy", "knobs"}
_PROXY = {"dataset", "input_size", "width", "depth", "epochs", "num_classes"}
_KNOB = {"per", "min", "max", "choices", "stages"}


class _Unit(NamedTuple):
    """Where knobs are set: a stage of a ResNeXt-family target, or the whole of a CondConv network."""

    name: str
    depth: int
    cardinality: int
    knobs: tuple[str, ...]


def _units(target: NetConfig | CondNetConfig) -> tuple[_Unit, ...]:
    if isinstance(target, CondNetConfig):  # seed 001: one expert count and routing for every CondConv layer
        return (_Unit("condconv", 1, 0, ("experts", "routing")),)
    return tuple(_Unit(s.name, s.depth, s.cardinality, KNOBS) for s in target.stages)


@dataclass(frozen=True)
class Knob:
    """One searched knob: ``values`` per stage (ints or routing names), sampled per stage or block."""

    name: str
    per: str  # "stage" or "block"
    stages: tuple[str, ...]  # stages it applies to; the others keep the knob off
    values: dict[str, tuple]  # stage name -> allowed values


@dataclass(frozen=True)
class Proxy:
    dataset: str  # where proxy accuracy comes from
    input_size: int  # proxy input resolution
    width: float  # multiplier of every channel count (stem, outputs, path widths), >= 1 channel
    depth: tuple[int, ...] | None  # blocks per stage of the proxy (None: the target's)
    epochs: int  # training epochs used to estimate accuracy
    num_classes: int | None  # classifier outputs of the proxy (None: the target's)


@dataclass(frozen=True)
class Space:
    """A validated search space; ``values`` below map parameter names (``conv3.k``) to choices."""

    name: str
    description: str
    source: str  # the file it came from
    target: NetConfig | CondNetConfig
    target_args: dict[str, Any]
    proxy: Proxy
    knobs: tuple[Knob, ...]

    def parameters(self) -> dict[str, tuple]:
        """Every searched parameter with its allowed values, e.g. ``{"conv3.k": (1, ..., 32)}``."""
        params: dict[str, tuple] = {}
        for knob in self.knobs:
            for stage in _units(self.target):
                if stage.name not in knob.stages:
                    continue
                keys = (
                    [f"{stage.name}.{knob.name}"]
                    if knob.per == "stage"
                    else [f"{stage.name}.{i}.{knob.name}" for i in range(stage.depth)]
                )
                for key in keys:
                    params[key] = knob.values[stage.name]
        return params

    def knob_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Per-knob, per-stage settings for :func:`~sparsearch.models.with_knobs` (for a CondConv
        network, the network-wide ``experts`` and ``routing``)."""
        allowed = self.parameters()
        unknown = set(values) - set(allowed)
        if unknown:
            raise ConfigError(
                f"space {self.name}: unknown parameter(s) {sorted(unknown)}; parameters: {', '.join(allowed)}"
            )
        for key, value in values.items():
            if value not in allowed[key]:
                raise ConfigError(
                    f"space {self.name}: {key}={value!r} is not allowed; allowed: {_describe(allowed[key])}"
                )
        if isinstance(self.target, CondNetConfig):  # network-wide knobs go to the layout as they are
            return {key.split(".")[-1]: value for key, value in values.items()}
        knobs: dict[str, dict[str, Any]] = {}
        for knob in self.knobs:
            for stage in self.target.stages:
                if stage.name not in knob.stages:
                    continue
                if knob.per == "stage":
                    key = f"{stage.name}.{knob.name}"
                    if key in values:
                        knobs.setdefault(knob.name, {})[stage.name] = values[key]
                else:
                    current = getattr(stage, knob.name)
                    per_block = tuple(
                        values.get(f"{stage.name}.{i}.{knob.name}", current[i]) for i in range(stage.depth)
                    )
                    knobs.setdefault(knob.name, {})[stage.name] = per_block
        return knobs

    def target_config(self, values: dict[str, Any] | None = None) -> NetConfig | CondNetConfig:
        """The target network with ``values`` applied (none: every knob off)."""
        return layout(self.target_args["model"], **self._layout_args(), **self.knob_values(values or {}))

    def proxy_config(self, values: dict[str, Any] | None = None) -> NetConfig | CondNetConfig:
        """The proxy network: the target scaled in width and depth, at the proxy's input size."""
        p = self.proxy
        args = self._layout_args() | {"input_size": p.input_size}
        if p.num_classes is not None and getattr(self.target, "head", "classifier") == "classifier":
            args["num_classes"] = p.num_classes
        base = layout(self.target_args["model"], **args, **self.knob_values(values or {}))
        return _scale(base, p.width, p.depth)

    def _layout_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.target_args.items() if k != "model"}

    def sample(self, trial: Any) -> dict[str, Any]:
        """Draw every parameter from an Optuna trial; returns the values for :meth:`target_config`."""
        values: dict[str, Any] = {}
        for key, allowed in self.parameters().items():
            if all(isinstance(v, int) for v in allowed) and allowed == tuple(range(allowed[0], allowed[-1] + 1)):
                values[key] = trial.suggest_int(key, allowed[0], allowed[-1])
            else:
                values[key] = trial.suggest_categorical(key, list(allowed))
        return values


def _describe(allowed: tuple) -> str:
    if len(allowed) > 6 and all(isinstance(v, int) for v in allowed):
        return f"{allowed[0]}..{allowed[-1]}"
    return ", ".join(str(v) for v in allowed)


def _scale(config: NetConfig | CondNetConfig, width: float, depth: tuple[int, ...] | None) -> NetConfig | CondNetConfig:
    """Channels × width (at least one per path), blocks per stage from ``depth``; knobs kept per
    block by position (block i of the proxy takes block ⌊i·target/proxy⌋ of the target)."""
    if isinstance(config, CondNetConfig):
        return replace(config, width=config.width * width)

    def ch(n: int) -> int:
        return max(1, round(n * width))

    stages = []
    for i, s in enumerate(config.stages):
        blocks = depth[i] if depth is not None else s.depth
        pick = [j * s.depth // blocks for j in range(blocks)]
        stages.append(
            replace(
                s,
                depth=blocks,
                out_channels=ch(s.out_channels),
                width=ch(s.width),
                k=tuple(s.k[j] for j in pick),
                experts=tuple(s.experts[j] for j in pick),
                routing=tuple(s.routing[j] for j in pick),
            )
        )
    head_channels = ch(config.head_channels) if config.head == "conv" else config.head_channels
    return replace(config, stages=tuple(stages), stem_channels=ch(config.stem_channels), head_channels=head_channels)


def load_space(path: str | Path) -> Space:
    """Read and validate a space file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the space file ({err.strerror})") from None
    return parse_space(text, str(path))


def parse_space(text: str, source: str = "<space>") -> Space:
    """Validate the YAML text of a space; ``source`` names it in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    v = _Validator(source)
    data = v.mapping(data, "", _TOP, required={"name", "target", "knobs"})
    name = v.string(data["name"], "name")
    description = v.string(data.get("description", ""), "description", empty=True)
    target_args = v.mapping(data["target"], "target", None, required={"model"})
    model = target_args["model"]
    if model not in model_names():
        v.fail("target.model", f"{model!r} is not a model; allowed: {', '.join(model_names())}")
    try:
        target = layout(model, **{k: val for k, val in target_args.items() if k != "model"})
    except ConfigError as err:
        v.fail("target", str(err))
    proxy = v.proxy(data.get("proxy", {}), target)
    knobs_data = v.mapping(data["knobs"], "knobs", set(KNOBS))
    if not knobs_data:
        v.fail("knobs", f"a space searches at least one knob; knobs: {', '.join(KNOBS)}")
    knobs = tuple(v.knob(key, value, target) for key, value in knobs_data.items())
    v.compatible(knobs)
    space = Space(name, description, source, target, dict(target_args), proxy, knobs)
    try:  # the off configuration of target and proxy must build (shapes, widths)
        space.proxy_config()
    except ConfigError as err:
        v.fail("proxy", str(err))
    return space


class _Validator:
    """Checks with messages ``<file>: <key>: <what is wrong>; allowed: ...``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def mapping(
        self, value: Any, key: str, allowed: set[str] | None, required: set[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key or "(top level)", f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key or "(top level)", f"keys must be strings, got {k!r}")
        if allowed is not None:
            unknown = set(value) - allowed
            if unknown:
                self.fail(_join(key, sorted(unknown)[0]), f"unknown key; allowed: {', '.join(sorted(allowed))}")
        missing = required - set(value)
        if missing:
            self.fail(_join(key, sorted(missing)[0]), "required key is missing")
        return value

    def string(self, value: Any, key: str, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, key: str, low: int = 1, high: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            self.fail(key, f"{value} is out of range; allowed: {low}..{high if high is not None else ''}")
        return value

    def proxy(self, value: Any, target: NetConfig | CondNetConfig) -> Proxy:
        data = self.mapping(value, "proxy", _PROXY)
        dataset = data.get("dataset", "digits")
        if dataset not in DATASETS:
            self.fail("proxy.dataset", f"{dataset!r} is not a dataset; allowed: {', '.join(DATASETS)}")
        width = data.get("width", 1.0)
        if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= 1:
            self.fail("proxy.width", f"expected a number in (0, 1], got {width!r}")
        depth = data.get("depth")
        if depth is not None and isinstance(target, CondNetConfig):
            self.fail("proxy.depth", "a CondConv network keeps its depth; scale it with proxy.width")
        if depth is not None:
            if not isinstance(depth, list) or len(depth) != len(target.stages):
                self.fail(
                    "proxy.depth",
                    f"expected a list of {len(target.stages)} block counts "
                    f"(stages {', '.join(s.name for s in target.stages)}), got {depth!r}",
                )
            depth = tuple(
                self.integer(d, f"proxy.depth[{i}]", 1, s.depth)
                for i, (d, s) in enumerate(zip(depth, target.stages, strict=True))
            )
        classes = data.get("num_classes")
        return Proxy(
            dataset=dataset,
            input_size=self.integer(data.get("input_size", target.input_size), "proxy.input_size", 8),
            width=float(width),
            depth=depth,
            epochs=self.integer(data.get("epochs", 1), "proxy.epochs", 1),
            num_classes=None if classes is None else self.integer(classes, "proxy.num_classes", 2),
        )

    def knob(self, name: str, value: Any, target: NetConfig | CondNetConfig) -> Knob:
        key = f"knobs.{name}"
        data = self.mapping(value, key, _KNOB)
        units = _units(target)
        if name not in units[0].knobs:
            self.fail(key, f"{name} is not a knob of this target; knobs: {', '.join(units[0].knobs)}")
        per = data.get("per", "stage")
        if per not in ("stage", "block"):
            self.fail(f"{key}.per", f"{per!r} is not allowed; allowed: stage, block")
        names = [u.name for u in units]
        stages = data.get("stages", names)
        if not isinstance(stages, list) or not stages:
            self.fail(f"{key}.stages", f"expected a non-empty list of stages ({', '.join(names)}), got {stages!r}")
        for s in stages:
            if s not in names:
                self.fail(f"{key}.stages", f"{s!r} is not a stage of the target; allowed: {', '.join(names)}")
        if per == "block" and (name == "fan_in" or isinstance(target, CondNetConfig)):
            self.fail(f"{key}.per", f"{name} is set per stage here; allowed: stage")
        values = {}
        for unit in units:
            if unit.name in stages:
                values[unit.name] = self._values(name, key, data, unit.cardinality, unit.name)
                if isinstance(target, CondNetConfig) and "noisy_topk" in values[unit.name]:
                    self.fail(
                        f"{key}.choices",
                        "noisy_topk routes paths, not CondConv experts; allowed: relu_l1, sigmoid, softmax",
                    )
        return Knob(name, per, tuple(stages), values)

    def _values(self, name: str, key: str, data: dict, cardinality: int, stage: str) -> tuple:
        if name == "routing":
            if "min" in data or "max" in data:
                self.fail(key, "routing takes choices, not min/max")
            choices = data.get("choices", routing_names())
            if not isinstance(choices, list) or not choices:
                self.fail(f"{key}.choices", f"expected a non-empty list, got {choices!r}")
            for c in choices:
                if c not in routing_names() or c == "constant":
                    self.fail(
                        f"{key}.choices",
                        f"{c!r} is not a routing function that ranks paths; "
                        f"allowed: {', '.join(r for r in routing_names() if r != 'constant')}",
                    )
            return tuple(choices)
        if "choices" in data:
            if "min" in data or "max" in data:
                self.fail(key, "give either choices or min/max, not both")
            choices = data["choices"]
            if not isinstance(choices, list) or not choices:
                self.fail(f"{key}.choices", f"expected a non-empty list, got {choices!r}")
            for c in choices:
                if not isinstance(c, int) or isinstance(c, bool) or c < 1:
                    self.fail(f"{key}.choices", f"{c!r} is not a positive integer")
                if name == "experts" and c not in EXPERT_COUNTS:
                    self.fail(f"{key}.choices", f"experts={c}; allowed: {', '.join(map(str, EXPERT_COUNTS))}")
                if name in ("k", "fan_in") and c > cardinality:
                    self.fail(f"{key}.choices", f"{name}={c} exceeds cardinality {cardinality} in stage {stage}")
            return tuple(sorted(set(choices)))
        if name == "experts":
            return EXPERT_COUNTS
        low = self._bound(data.get("min", 1), f"{key}.min", cardinality, name, stage)
        high = self._bound(data.get("max", "cardinality"), f"{key}.max", cardinality, name, stage)
        if low > high:
            self.fail(key, f"min={low} exceeds max={high} in stage {stage}")
        return tuple(range(low, high + 1))

    def _bound(self, value: Any, key: str, cardinality: int, name: str, stage: str) -> int:
        if value == "cardinality":
            return cardinality
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(key, f"expected a positive integer or 'cardinality', got {value!r}")
        if value > cardinality:
            self.fail(key, f"{name}={value} exceeds cardinality {cardinality} in stage {stage}")
        return value

    def compatible(self, knobs: tuple[Knob, ...]) -> None:
        by_name = {k.name: k for k in knobs}
        if "fan_in" in by_name:
            for other in ("k", "experts"):
                shared = set(by_name["fan_in"].stages) & set(by_name[other].stages) if other in by_name else set()
                if shared:
                    self.fail(
                        f"knobs.{other}",
                        f"stage {sorted(shared)[0]} also searches fan_in: a "
                        "GateConnect stage takes neither top-k nor experts",
                    )
        if "k" in by_name and "routing" not in by_name:
            self.fail("knobs.routing", "searching k needs a routing knob (a gate that ranks paths)")
        if "routing" in by_name and "k" in by_name and set(by_name["k"].stages) - set(by_name["routing"].stages):
            self.fail("knobs.routing.stages", "must cover every stage that searches k")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
