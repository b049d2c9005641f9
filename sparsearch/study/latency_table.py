"""A latency model of a space's target on this machine: each block measured at each value of its knobs.

``build_table`` measures, for every distinct block shape of the target (the first block of a stage and the
others differ), each value of ``k`` and ``experts`` the space allows, with a gate (softmax: every routing
function's cost is a small linear layer, the same for all of them), in its inference form (norms folded,
epilogues fused: :mod:`sparsearch.models.inference`), sparse execution, at one batch size and thread count;
and the fixed part (stem and head, in their inference form too). The predicted latency of a configuration
is the fixed part plus its blocks' entries (:meth:`LatencyTable.predict`). ``validate`` measures random
configurations end to end and reports the prediction error.

The table records the machine (CPU model, threads, torch), and a table from another CPU model or thread
count is refused (latency does not travel between machines).
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sparsearch.config import NetConfig, plan
from sparsearch.errors import ConfigError
from sparsearch.layers import FusedTopKBottleneck, TopKBottleneck
from sparsearch.limits import read_capped
from sparsearch.models.inference import for_inference
from sparsearch.safe_io import write_text
from sparsearch.spaces import Space
from sparsearch.strict_json import parse_json
from sparsearch.train.latency import forward, measure
from sparsearch.train.machine import describe_machine

__all__ = [
    "LatencyTable",
    "build_table",
    "default_table_path",
    "load_table",
    "save_table",
    "table_for_study",
    "table_from_dict",
    "validate_table",
]

FORMAT = "sparsearch-latency-table"
GATE = "softmax"  # the routing the blocks are measured with


def _key(b) -> str:
    """A block's shape: what its latency depends on besides k and experts."""
    s = b.stage
    return f"{b.in_channels}x{b.in_size[0]}x{b.in_size[1]}->{b.out_channels}/s{b.stride}/C{s.cardinality}d{s.width}"


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per call: the fixed part, and per block shape ``"k,experts" -> ms``."""

    space: str
    batch: int
    machine: dict[str, Any]
    fixed_ms: float
    blocks: dict[str, dict[str, float]]

    def check_machine(self) -> None:
        here = describe_machine()
        for key in ("cpu", "threads"):
            if self.machine.get(key) != here[key]:
                raise ConfigError(
                    f"the latency table of space {self.space} was measured with {key} {self.machine.get(key)!r}, "
                    f"this machine has {here[key]!r}: measure it here (sparsearch latency-table {self.space})"
                )

    def predict(self, config: NetConfig) -> float:
        """Predicted milliseconds of ``config`` (a configuration of the table's space's target)."""
        total = self.fixed_ms
        for b in plan(config).blocks:
            row = self.blocks.get(_key(b))
            entry = None if row is None else row.get(f"{b.k},{b.experts}")
            if entry is None:
                raise ConfigError(
                    f"the latency table of space {self.space} has no entry for block {b.name} at k={b.k}, "
                    f"experts={b.experts}: measure it again (sparsearch latency-table {self.space})"
                )
            total += entry
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def _target(space: Space, values: dict[str, Any] | None = None) -> NetConfig:
    config = space.target_config(values or {})
    gateconnect = any(k.name == "fan_in" for k in space.knobs) or config.multi_stream
    if not config.per_block_latency or gateconnect:
        raise ConfigError(f"space {space.name}: a latency table covers top-k ResNeXt-family targets")
    return config


def _gated(config: NetConfig) -> NetConfig:
    """``config`` with a gate (:data:`GATE`) in every block that has none, as the table was measured."""
    stages = tuple(replace(s, routing=tuple(GATE if r == "constant" else r for r in s.routing)) for s in config.stages)
    return replace(config, stages=stages)


def _allowed(space: Space, stage: str, knob: str, default: tuple) -> tuple:
    for kn in space.knobs:
        if kn.name == knob and stage in kn.values:
            return kn.values[stage]
    return default


@torch.no_grad()
def build_table(space: Space, batch: int = 1, min_run_time: float = 0.02, log=None) -> LatencyTable:
    """Measure every block shape of ``space``'s target at each allowed (k, experts), and the fixed part."""
    say = log or (lambda message: None)
    config = _gated(_target(space))
    torch.manual_seed(0)
    from sparsearch.models import build_model

    net = build_model(config).eval()
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size)
    stem = measure(forward(for_inference(net.stem), x), min_run_time=min_run_time)
    features = net.stem(x)
    shapes: dict[str, Any] = {}
    inputs: dict[str, torch.Tensor] = {}
    for b, block in zip(net.plan.blocks, net.blocks.values(), strict=True):
        if _key(b) not in shapes:
            shapes[_key(b)], inputs[_key(b)] = b, features
        features = block(features)
    head = measure(forward(for_inference(net.head), features), min_run_time=min_run_time)
    blocks: dict[str, dict[str, float]] = {}
    for n, (key, b) in enumerate(shapes.items(), 1):
        s = b.stage
        ks = _allowed(space, s.name, "k", (s.cardinality,))
        experts = _allowed(space, s.name, "experts", (1,))
        say(f"block {n} of {len(shapes)} ({key}): {len(ks)} values of k x {len(experts)} of experts")
        row = {}
        for e in experts:
            torch.manual_seed(0)
            block = TopKBottleneck(
                b.in_channels,
                b.out_channels,
                s.cardinality,
                s.width,
                s.cardinality,
                b.stride,
                GATE,
                experts=e,
                expert_routing=config.expert_routing,
            ).eval()
            for k in ks:
                block.set_k(k)
                fused = FusedTopKBottleneck.from_block(block)
                row[f"{k},{e}"] = measure(forward(fused, inputs[key]), min_run_time=min_run_time).ms
        blocks[key] = row
    return LatencyTable(space.name, batch, describe_machine(), stem.ms + head.ms, blocks)


def default_table_path(space: str, batch: int = 1) -> Path:
    return Path("studies") / "latency" / f"{space}-b{batch}.json"


def table_from_dict(data: Any, where: str = "latency table") -> LatencyTable:
    """The table :meth:`LatencyTable.to_dict` wrote, every field checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a sparsearch latency table")
    try:
        blocks = {str(k): {str(e): float(ms) for e, ms in row.items()} for k, row in dict(data["blocks"]).items()}
        return LatencyTable(
            str(data["space"]), int(data["batch"]), dict(data["machine"]), float(data["fixed_ms"]), blocks
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{where}: a latency table with a bad field ({err})") from None


def load_table(path: str | Path) -> LatencyTable:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no latency table there; measure one with sparsearch latency-table SPACE")
    raw = read_capped(path, 16 << 20, "latency table")  # a regular file within the cap, or one line
    try:
        data = parse_json(raw)
    except ValueError as err:  # not UTF-8 JSON, or a key written twice
        raise ConfigError(f"{path}: not a sparsearch latency table ({type(err).__name__}: {err})") from None
    return table_from_dict(data, str(path))


def table_for_study(space: Space, path: str | Path | None = None) -> dict[str, Any]:
    """The table a latency-budget study of ``space`` predicts with (``path``, else the default one): of this
    space, measured on this machine; as the dict the study's settings store."""
    table = load_table(path or default_table_path(space.name))
    if table.space != space.name:
        raise ConfigError(f"the latency table is of space {table.space!r}, not {space.name!r}")
    table.check_machine()
    return table.to_dict()


def save_table(table: LatencyTable, path: str | Path) -> None:
    write_text(path, json.dumps(table.to_dict(), indent=1) + "\n", "latency table")


@torch.no_grad()
def validate_table(table: LatencyTable, space: Space, configurations: int = 20, seed: int = 0, log=None) -> dict:
    """Predicted vs measured end to end for ``configurations`` random configurations of ``space``."""
    from sparsearch.models import build_model

    say = log or (lambda message: None)
    rng = random.Random(seed)
    params = space.parameters()
    rows = []
    for i in range(configurations):
        values = {key: rng.choice(allowed) for key, allowed in params.items()}
        config = _gated(_target(space, values))
        torch.manual_seed(0)
        model = for_inference(build_model(config))
        x = torch.randn(table.batch, config.in_channels, config.input_size, config.input_size)
        measured = measure(forward(model, x), min_run_time=0.2).ms
        predicted = table.predict(config)
        rows.append({"values": values, "predicted_ms": predicted, "measured_ms": measured})
        say(f"configuration {i + 1} of {configurations}: predicted {predicted:.1f} ms, measured {measured:.1f} ms")
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    return {
        "configurations": configurations,
        "seed": seed,
        "median_abs_error": statistics.median(errors),
        "max_abs_error": max(errors),
        "target": 0.10,
        "met": statistics.median(errors) <= 0.10,
        "machine": describe_machine(),
        "rows": rows,
    }
