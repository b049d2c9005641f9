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

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sparsearch.config import ELASTIC, NetworkFamily, layout, model_names, routing_names
from sparsearch.config.sort_of_clevr import parse_options
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, read_capped, shown
from sparsearch.spaces.space import DATASETS, EXPERT_COUNTS, KNOBS, Knob, Proxy, Space, knob_units

__all__ = ["FIELDS", "KNOB_DOCS", "Field", "load_space", "parse_space", "read_space_text"]


@dataclass(frozen=True)
class Field:
    """One key of a space file, for the validator (the allowed keys) and the generated reference."""

    key: str  # "proxy.width"; "knobs.<knob>.per" for every knob
    kind: str
    default: str
    doc: str


FIELDS = (
    Field("name", "string", "(required)", "The space's name: what `sparsearch spaces` lists and `--space` takes."),
    Field("description", "string", '""', "One line for `sparsearch spaces`."),
    Field(
        "target",
        "mapping",
        "(required)",
        "The target network: `model` and that layout's arguments (below). The budget constrains its "
        "executed FLOPs per example, counted analytically.",
    ),
    Field("target.model", "string", "(required)", "A registered layout; see the table of layouts below."),
    Field(
        "target.factory",
        "module:function",
        "(instead of model)",
        "Your own network: a model factory `make_model(num_classes, in_channels)`, imported from the current "
        "directory or PYTHONPATH; its grouped bottlenecks become top-k blocks (knobs `k`, `routing` per module "
        "that holds them). With it: `input_size` (required), `in_channels` (3), `num_classes` (1000). "
        "See docs/own-network.md.",
    ),
    Field("proxy", "mapping", "{}", "The network and data that estimate accuracy on a small machine."),
    Field(
        "proxy.dataset",
        "string",
        "digits",
        f"Proxy data: {', '.join(DATASETS)}, or `sort-of-clevr:train=N,test=M,seed=S` (`--data` overrides it).",
    ),
    Field("proxy.input_size", "integer >= 8", "the target's", "Proxy input resolution."),
    Field(
        "proxy.width",
        "number in (0, 1]",
        "1.0",
        "Multiplier of every channel count (stem, outputs, path widths), at least one channel per path.",
    ),
    Field(
        "proxy.depth",
        "list of integers, one per stage",
        "the target's",
        "Blocks per stage of the proxy (at most the target's); knobs set per block are taken by position.",
    ),
    Field("proxy.epochs", "integer >= 1", "1", "Proxy training epochs (supernets and `--eval train` trials)."),
    Field("proxy.num_classes", "integer >= 2", "the target's", "Classifier outputs of the proxy."),
    Field(
        "proxy.pretrained",
        "boolean",
        "true",
        "A user's network (`target.factory`): fine-tune from the factory's weights; false re-initialises them.",
    ),
    Field("knobs", "mapping", "(required)", f"The knobs searched, at least one of: {', '.join(KNOBS)}."),
    Field(
        "knobs.<knob>.per",
        "stage or block",
        "stage",
        "One value per stage, or one per block of the stage (`fan_in` and CondConv networks: stage only).",
    ),
    Field("knobs.<knob>.min", "integer >= 1", "1", "k and fan_in: the smallest value."),
    Field("knobs.<knob>.max", "integer or `cardinality`", "cardinality", "k and fan_in: the largest (at most C)."),
    Field(
        "knobs.<knob>.choices",
        "list",
        "all allowed",
        f"Explicit values instead of min/max; experts: from {', '.join(map(str, EXPERT_COUNTS))}; "
        "routing: routing function names.",
    ),
    Field("knobs.<knob>.stages", "list of stage names", "every stage", "The stages that search this knob."),
    Field(
        "knobs.<knob>.shared",
        "boolean",
        "false",
        "experts, routing: one supernet holds every value (`--eval supernet`): the first n of the largest "
        "expert count, each routing function on the gate's one trunk. Else each structure trains a supernet "
        "of its own. k and fan_in always share. Families that switch them in place: the ResNeXt family and "
        "the CNN + Relation Network.",
    ),
)

KNOB_DOCS = {
    "k": "top-k: paths run per example of the C paths of a block (a gate ranks them); needs `routing`.",
    "experts": "CondConv experts n per path convolution (1: a plain convolution).",
    "routing": "the gate's routing function (softmax, sigmoid, relu_l1, noisy_topk ...).",
    "fan_in": "GateConnect fan-in K: inputs each branch takes from the previous module (GateConnect layouts).",
}


def _keys(prefix: str) -> set[str]:
    if not prefix:
        return {f.key for f in FIELDS if "." not in f.key}
    return {f.key[len(prefix) + 1 :] for f in FIELDS if f.key.startswith(prefix + ".")}


_TOP = _keys("")
_PROXY = _keys("proxy")
_KNOB = _keys("knobs.<knob>")


def read_space_text(path: str | Path) -> str:
    """The text of a space file: a regular file of at most ``MAX["space_file_bytes"]``, in UTF-8."""
    path = Path(path)
    try:
        data = read_capped(path, MAX["space_file_bytes"], "space file")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the space file ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: cannot read the space file (not UTF-8 text: byte {err.start})") from None


def load_space(path: str | Path) -> Space:
    """Read and validate a space file (a model factory it names is trusted: the caller named the file)."""
    return parse_space(read_space_text(path), str(path), trust=True)


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounds, checked while composing (before anything is built): nesting depth,
    aliases, and the size of the document with every alias expanded (a few hundred bytes of aliases of
    aliases otherwise stand for billions of elements); and no key written twice in one mapping (YAML
    forbids it, PyYAML lets the last one win)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX["yaml_aliases"]:
                raise _Bound(f"more than {MAX['yaml_aliases']} aliases")
        self.depth += 1
        if self.depth > MAX["yaml_depth"]:
            raise _Bound(f"nested deeper than {MAX['yaml_depth']} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self):
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def expanded(n: yaml.Node) -> int:  # memoised: each node is counted once, aliases by their size
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a cycle counts once
                if isinstance(n, yaml.SequenceNode):
                    sizes[id(n)] = 1 + sum(expanded(c) for c in n.value)
                elif isinstance(n, yaml.MappingNode):
                    _unique_keys(n)
                    sizes[id(n)] = 1 + sum(expanded(k) + expanded(v) for k, v in n.value)
                else:
                    sizes[id(n)] = 1
                if sizes[id(n)] > MAX_YAML_NODES:
                    raise _Bound(f"more than {MAX_YAML_NODES:,} values once its aliases are expanded")
            return sizes[id(n)]

        if node is not None:
            expanded(node)
        return node


class _Bound(Exception):
    """A space file beyond a bound of :class:`_BoundedLoader`."""


class _DuplicateKey(Exception):
    """A space file with a key written twice in one mapping."""


def _unique_keys(node: yaml.MappingNode) -> None:
    """Refuse a scalar key written twice in ``node`` (a merge key ``<<`` may repeat)."""
    first: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            raise _DuplicateKey(f"key {key.value!r} written twice in one mapping (lines {first[key.value]} and {line})")
        first[key.value] = line


MAX_YAML_NODES = 100_000


def parse_space(text: str, source: str = "<space>", *, trust: bool = False) -> Space:
    """Validate the YAML text of a space; ``source`` names it in error messages. A model factory it
    names is imported only with ``trust`` (the user named this space) or when already trusted
    (:func:`~sparsearch.config.trust_factory`)."""
    if len(text) > MAX["space_file_bytes"]:
        raise ConfigError(f"{source}: the space is larger than the {MAX['space_file_bytes']:,}-byte cap")
    loader = None
    try:
        loader = _BoundedLoader(text)  # a SafeLoader: plain data only, no tags that construct objects
        data = loader.get_single_data()
    except yaml.reader.ReaderError as err:  # a control character (the reader checks them all first)
        raise ConfigError(
            f"{source}: not YAML text: character #x{err.character:04x} at position {err.position} is not allowed"
        ) from None
    except _Bound as err:
        raise ConfigError(f"{source}: refused: the YAML is {err}") from None
    except _DuplicateKey as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        context, opened = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and opened and mark and opened.line != mark.line:  # where the unclosed thing began
            problem += f" ({context} at line {opened.line + 1})"
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    v = _Validator(source)
    data = v.mapping(data, "", _TOP, required={"name", "target", "knobs"})
    name = v.string(data["name"], "name")
    description = v.string(data.get("description", ""), "description", empty=True)
    target_args = v.mapping(data["target"], "target", None)
    if "factory" in target_args:
        return v.user_space(data, name, description, target_args, trust)
    if "model" not in target_args:
        v.fail("target.model", "required key is missing (a layout; or target.factory for your own network)")
    model = target_args["model"]
    if model not in model_names():
        v.fail("target.model", f"{shown(model)} is not a model; allowed: {', '.join(model_names())}")
    try:
        target = layout(model, **{k: val for k, val in target_args.items() if k != "model"})
    except ConfigError as err:
        v.fail("target", str(err))
    proxy = v.proxy(data.get("proxy", {}), target)
    knobs_data = v.mapping(data["knobs"], "knobs", set(KNOBS))
    if not knobs_data:
        v.fail("knobs", f"a space searches at least one knob; knobs: {', '.join(KNOBS)}")
    knobs = tuple(v.knob(key, value, target) for key, value in knobs_data.items())
    v.compatible(knobs, target)
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
                self.fail(key or "(top level)", f"keys must be strings, got {shown(k)}")
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
            self.fail(key, f"expected a non-empty string, got {shown(value)}")
        return value

    def integer(self, value: Any, key: str, low: int = 1, high: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, got {shown(value)}")
        if value < low or (high is not None and value > high):
            self.fail(key, f"{value} is out of range; allowed: {low}..{high if high is not None else ''}")
        return value

    def user_space(self, data: dict, name: str, description: str, target_args: dict, trust: bool) -> Space:
        """A space on a user's network: the factory imported (when trusted), converted and measured at the
        target's and the proxy's input sizes."""
        from sparsearch.config import is_trusted, trust_factory
        from sparsearch.config.user import check_factory_name

        allowed = {"factory", "input_size", "in_channels", "num_classes"}
        self.mapping(target_args, "target", allowed, required={"factory", "input_size"})
        try:
            factory = check_factory_name(target_args["factory"], "target.factory")
        except ConfigError as err:
            self.fail("target.factory", str(err).removeprefix("target.factory: "))
        if not (trust or is_trusted(factory)):
            self.fail(
                "target.factory",
                f"{factory} runs your code; name it to allow it: sparsearch --factory {factory} ...",
            )
        trust_factory(factory)
        size = self.integer(target_args["input_size"], "target.input_size", 8, MAX["input_size"])
        channels = self.integer(target_args.get("in_channels", 3), "target.in_channels", 1, MAX["channels"])
        classes = self.integer(target_args.get("num_classes", 1000), "target.num_classes", 2, MAX["classes"])
        proxy_data = self.mapping(data.get("proxy", {}), "proxy", _PROXY)
        for key in ("width", "depth", "num_classes"):
            if key in proxy_data:
                self.fail(f"proxy.{key}", "a user's network keeps its shape; the data sets its classes")
        pretrained = proxy_data.get("pretrained", True)
        if not isinstance(pretrained, bool):
            self.fail("proxy.pretrained", f"expected true or false, got {shown(pretrained)}")
        from sparsearch.models.user import measure_user_net

        target, _ = measure_user_net(factory, size, channels, classes)
        proxy = self.proxy({k: v for k, v in proxy_data.items() if k != "pretrained"}, target)
        proxy = replace(proxy, pretrained=pretrained)
        network = target
        if proxy.input_size != size or not pretrained:
            network, _ = measure_user_net(factory, proxy.input_size, channels, classes, pretrained)
        knobs_data = self.mapping(data["knobs"], "knobs", set(KNOBS))
        if not knobs_data:
            self.fail("knobs", "a space searches at least one knob: k and routing")
        knobs = tuple(self.knob(key, value, target) for key, value in knobs_data.items())
        self.compatible(knobs, target)
        return Space(name, description, self.source, target, dict(target_args), proxy, knobs, network)

    def proxy(self, value: Any, target: NetworkFamily) -> Proxy:
        data = self.mapping(value, "proxy", _PROXY)
        if "pretrained" in data:
            self.fail("proxy.pretrained", "applies to a user's network (target.factory); a layout trains from scratch")
        dataset = data.get("dataset", "digits")
        name, sep, options = dataset.partition(":") if isinstance(dataset, str) else (dataset, "", "")
        if name not in DATASETS or (sep and name != "sort-of-clevr"):
            self.fail("proxy.dataset", f"{shown(dataset)} is not a dataset; allowed: {', '.join(DATASETS)}")
        if sep:
            try:
                parse_options(options)
            except ConfigError as err:
                self.fail("proxy.dataset", str(err))
        width = data.get("width", 1.0)
        if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= 1:
            self.fail("proxy.width", f"expected a number in (0, 1], got {shown(width)}")
        depth = data.get("depth")
        if depth is not None and not target.scales_depth:
            self.fail("proxy.depth", f"{target.description} keeps its depth; scale it with proxy.width")
        if depth is not None:
            units = target.knob_units()
            if not isinstance(depth, list) or len(depth) != len(units):
                self.fail(
                    "proxy.depth",
                    f"expected a list of {len(units)} block counts "
                    f"(stages {', '.join(u.name for u in units)}), got {shown(depth)}",
                )
            depth = tuple(
                self.integer(d, f"proxy.depth[{i}]", 1, u.depth)
                for i, (d, u) in enumerate(zip(depth, units, strict=True))
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

    def knob(self, name: str, value: Any, target: NetworkFamily) -> Knob:
        key = f"knobs.{name}"
        data = self.mapping(value, key, _KNOB)
        units = knob_units(target)
        if name not in units[0].knobs:
            self.fail(key, f"{name} is not a knob of this target; knobs: {', '.join(units[0].knobs)}")
        per = data.get("per", "stage")
        if per not in ("stage", "block"):
            self.fail(f"{key}.per", f"{shown(per)} is not allowed; allowed: stage, block")
        names = [u.name for u in units]
        stages = data.get("stages", names)
        if not isinstance(stages, list) or not stages:
            self.fail(f"{key}.stages", f"expected a non-empty list of stages ({', '.join(names)}), got {shown(stages)}")
        for s in stages:
            if s not in names:
                self.fail(f"{key}.stages", f"{shown(s)} is not a stage of the target; allowed: {', '.join(names)}")
        if per == "block" and any(name not in u.per_block for u in units if u.name in stages):
            self.fail(f"{key}.per", f"{name} is set per stage here; allowed: stage")
        values = {}
        for unit in units:
            if unit.name in stages:
                values[unit.name] = self._values(name, key, data, unit.cardinality, unit.name)
                if unit.routes == "experts" and "noisy_topk" in values[unit.name]:
                    self.fail(
                        f"{key}.choices",
                        "noisy_topk routes paths, not CondConv experts; allowed: relu_l1, sigmoid, softmax",
                    )
        shared = data.get("shared", name in ELASTIC)
        if not isinstance(shared, bool):
            self.fail(f"{key}.shared", f"expected true or false, got {shown(shared)}")
        if name in ELASTIC and not shared:
            self.fail(f"{key}.shared", f"{name} changes which parts run, not the weights: it always shares")
        if shared and name not in target.shareable_knobs():
            self.fail(
                f"{key}.shared",
                f"{target.description} cannot switch {name} in place; allowed: {', '.join(target.shareable_knobs())}",
            )
        return Knob(name, per, tuple(stages), values, shared)

    def _values(self, name: str, key: str, data: dict, cardinality: int, stage: str) -> tuple:
        if name == "routing":
            if "min" in data or "max" in data:
                self.fail(key, "routing takes choices, not min/max")
            choices = data.get("choices", routing_names())
            if not isinstance(choices, list) or not choices:
                self.fail(f"{key}.choices", f"expected a non-empty list, got {shown(choices)}")
            for c in choices:
                if c not in routing_names() or c == "constant":
                    self.fail(
                        f"{key}.choices",
                        f"{shown(c)} is not a routing function that ranks paths; "
                        f"allowed: {', '.join(r for r in routing_names() if r != 'constant')}",
                    )
            return tuple(choices)
        if "choices" in data:
            if "min" in data or "max" in data:
                self.fail(key, "give either choices or min/max, not both")
            choices = data["choices"]
            if not isinstance(choices, list) or not choices:
                self.fail(f"{key}.choices", f"expected a non-empty list, got {shown(choices)}")
            for c in choices:
                if not isinstance(c, int) or isinstance(c, bool) or c < 1:
                    self.fail(f"{key}.choices", f"{shown(c)} is not a positive integer")
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
            self.fail(key, f"expected a positive integer or 'cardinality', got {shown(value)}")
        if value > cardinality:
            self.fail(key, f"{name}={value} exceeds cardinality {cardinality} in stage {stage}")
        return value

    def compatible(self, knobs: tuple[Knob, ...], target: NetworkFamily) -> None:
        by_name = {k.name: k for k in knobs}
        gated = {u.name for u in target.knob_units() if "routing" in u.knobs}  # units whose top-k needs a gate
        if "fan_in" in by_name:
            for other in ("k", "experts"):
                shared = set(by_name["fan_in"].stages) & set(by_name[other].stages) if other in by_name else set()
                if shared:
                    self.fail(
                        f"knobs.{other}",
                        f"stage {sorted(shared)[0]} also searches fan_in: a "
                        "GateConnect stage takes neither top-k nor experts",
                    )
        k_gated = set(by_name["k"].stages) & gated if "k" in by_name else set()
        if k_gated and "routing" not in by_name:
            self.fail("knobs.routing", "searching k needs a routing knob (a gate that ranks paths)")
        if "routing" in by_name and k_gated - set(by_name["routing"].stages):
            self.fail("knobs.routing.stages", "must cover every stage that searches k")


def _join(prefix: str, key: object) -> str:
    """``prefix.key``; a key that is not a plain name (a newline in it, not a string) quoted as Python would."""
    name = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else shown(key)
    return f"{prefix}.{name}" if prefix else name


_PLAIN_KEY = re.compile(r"[\w.\-+]{1,100}", re.ASCII)
