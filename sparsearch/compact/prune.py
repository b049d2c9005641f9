"""``sparsearch prune``: a trained checkpoint -> connectivity graph -> compacted dense model, verified.

1. Load the checkpoint and its data; run the model (eval) on calibration batches of the training split,
   recording path selections and expert routing weights (:mod:`~sparsearch.compact.calibration`).
2. Build the connectivity graph and find the dead blocks (:mod:`~sparsearch.compact.graph`).
3. Edits: every GateConnect module becomes its live branches with fixed input sums; usage removes
   never-selected paths and unused experts and folds constant CondConv routing (:mod:`~.edits`).
4. Check: the compacted model's outputs on the calibration batches equal the source's within ``atol``
   (removals that usage alone justifies are checked on validation accuracy instead, within
   ``max_drop``); optional channel pruning and fine-tuning follow, reported on accuracy.
5. Write, atomically, a directory that is itself a sparsearch checkpoint of the compacted model, with
   a ``torch.export`` program, ``report.json``, ``report.md`` and ``connectivity.png``.
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsearch.compact.calibration import calibrate, usage_edits
from sparsearch.compact.export import PROGRAM_FILE, export_program
from sparsearch.compact.graph import connectivity_graph, dead_blocks, module_summaries
from sparsearch.cost.walk import find_network, network_cost
from sparsearch.errors import ConfigError, SparsearchError, WriteError
from sparsearch.layers import GateConnectModule
from sparsearch.models import SparseResNeXt
from sparsearch.models.edits import apply_edits
from sparsearch.train.checkpoint import (
    CheckpointError,
    is_checkpoint,
    load_checkpoint,
    move_into_place,
    save_checkpoint,
)
from sparsearch.train.loop import evaluate, fit, forward_batch
from sparsearch.train.run import checkpoint_data, measure_latency, model_flops
from sparsearch.train.settings import TrainSettings

__all__ = ["PruneError", "PruneSettings", "branch_edits", "prune_checkpoint"]

REPORT_JSON, REPORT_MD, PICTURE = "report.json", "report.md", "connectivity.png"
EXACT_OPS = ("branches", "paths", "fold")  # equal outputs on the calibration batches


class PruneError(SparsearchError):
    """Compaction failed a check; nothing was written."""


@dataclass(frozen=True)
class PruneSettings:
    calib_batches: int = 8  # calibration batches from the training split
    batch_size: int = 64
    threshold: float = 0.01  # experts whose routing weight never reaches it are removed
    tolerance: float = 1e-6  # routing weights with a std at most this are constant: the layer folds
    atol: float = 1e-4  # largest output difference allowed where the compaction is exact
    max_drop: float = 0.01  # largest validation accuracy drop allowed for usage-based removals
    channels: float | None = None  # share of inner channels removed by channel pruning
    importance: str = "l2"  # channel importance criterion (torch-pruning): l1, l2 or random
    round_to: int = 1  # channels kept per branch/path are a multiple of this
    finetune_epochs: int = 0
    latency_batches: tuple[int, ...] = (1, 32)
    export: bool = True

    def __post_init__(self) -> None:
        for key in ("calib_batches", "batch_size", "round_to"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key.replace('_', '-')}={value!r} must be a positive integer")
        if not 0 <= self.threshold < 1:
            raise ConfigError(f"threshold={self.threshold!r} must be in [0, 1)")
        if not self.tolerance >= 0 or not self.atol > 0 or not 0 <= self.max_drop <= 1:
            raise ConfigError("tolerance must be >= 0, atol > 0 and max-drop in [0, 1]")
        if self.channels is not None and not 0 < self.channels < 1:
            raise ConfigError(f"channels={self.channels!r} must be a ratio in (0, 1)")
        if self.importance not in ("l1", "l2", "random"):
            raise ConfigError(f"importance={self.importance!r}; allowed: l1, l2, random")
        if not isinstance(self.finetune_epochs, int) or self.finetune_epochs < 0:
            raise ConfigError(f"finetune-epochs={self.finetune_epochs!r} must be a non-negative integer")


def _net_prefix(model: nn.Module) -> str:
    net = find_network(model)
    return next(name for name, m in model.named_modules() if m is net)


def branch_edits(net: SparseResNeXt, prefix: str, dead: set[str]) -> list[dict[str, Any]]:
    """One ``branches`` edit per GateConnect module: its live branches and their fixed inputs."""
    from sparsearch.compact.graph import branch_node

    edits = []
    kept_before: list[int] = [0]  # original indices of the previous producer's kept outputs
    for b, (key, module) in zip(net.plan.blocks, net.blocks.items(), strict=True):
        if not isinstance(module, GateConnectModule):
            kept_before = [0]
            continue
        keep = [j for j in range(module.cardinality) if branch_node(b.name, j) not in dead]
        if module.num_inputs == 1:
            sources, num_inputs = [[0] for _ in keep], 1
        else:
            position = {k: i for i, k in enumerate(kept_before)}
            matrix = module.connectivity_matrix()
            sources = [sorted(position[k] for k in matrix[j].nonzero().flatten().tolist()) for j in keep]
            num_inputs = len(kept_before)
        name = f"{prefix}.blocks.{key}" if prefix else f"blocks.{key}"
        evidence = {"block": b.name, "dead": [j for j in range(module.cardinality) if j not in keep]}
        evidence["fan_in"] = [len(s) for s in sources]
        edits.append(
            {
                "op": "branches",
                "module": name,
                "keep": keep,
                "sources": sources,
                "num_inputs": num_inputs,
                "evidence": evidence,
            }
        )
        kept_before = keep
    return edits


def check_equivalence(exact: bool, diff: float, atol: float) -> None:
    """An exact compaction must reproduce the source's outputs within ``atol`` (float64)."""
    if exact and not diff <= atol:
        raise PruneError(
            f"equivalence check failed: the compacted model differs from the source by {diff:.3g} "
            f"(> {atol}) on the calibration batches, in float64"
        )


def check_accuracy(exact: bool, before: float, after: float, max_drop: float) -> None:
    """Usage-based removals may cost at most ``max_drop`` validation accuracy."""
    if not exact and before - after > max_drop:
        raise PruneError(
            f"usage-based removals cost {before - after:.4f} validation accuracy "
            f"(> max-drop {max_drop}); lower --threshold or use more --calib-batches"
        )


def _finetune_settings(recorded: Any, epochs: int) -> TrainSettings:
    """The source's training settings, for ``epochs`` at a tenth of its learning rate."""
    known = {f.name for f in fields(TrainSettings)}
    values = {k: v for k, v in recorded.items() if k in known} if isinstance(recorded, dict) else {}
    try:
        base = TrainSettings.from_dict(values)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"the checkpoint's training settings cannot be reused for fine-tuning ({err})") from None
    return replace(base, epochs=epochs, lr=base.lr / 10)


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b, strict=True))


@torch.no_grad()
def _outputs(model: nn.Module, batches: list, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """Eval outputs of a ``dtype`` copy of ``model`` (float64: free of float32 rounding, which grows with
    the activations)."""
    copied = copy.deepcopy(model).to(dtype).eval()
    outputs = []
    for batch in batches:
        batch = batch.to(device)
        outputs.append(forward_batch(copied, replace(batch, images=batch.images.to(dtype))).cpu())
    return outputs


def _costs(model: nn.Module, example) -> dict[str, int]:
    report = network_cost(model)
    return {
        "network_executed_flops": report.executed_flops,
        "network_dense_flops": report.dense_flops,
        "model_flops": model_flops(model, example),
        "params": sum(p.numel() for p in model.parameters()),
    }


def _latency(before: nn.Module, after: nn.Module, split, sizes: tuple[int, ...], device) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        size = min(size, len(split))
        batch = split.batch(torch.arange(size)).to(device)
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(3):  # alternate, so that both see the same machine load
            times["before"].append(measure_latency(before, batch))
            times["after"].append(measure_latency(after, batch))
        b, a = min(times["before"]), min(times["after"])
        rows.append({"batch": size, "before_ms": b * 1e3, "after_ms": a * 1e3, "speedup": b / a})
    return rows


def _describe(edit: dict[str, Any]) -> str:
    op, ev = edit["op"], edit.get("evidence", {})
    if op == "branches":
        dead = ev.get("dead", [])
        return f"{len(edit['keep'])} live branches kept, {len(dead)} dead removed {dead}; gates -> fixed sums"
    if op == "paths":
        return f"paths {ev['removed']} never selected in {ev['examples']} examples; {len(edit['keep'])} kept"
    if op == "experts":
        return f"experts {ev['removed']} never reached routing weight {ev['threshold']}; {len(edit['keep'])} kept"
    return f"routing constant (std <= tolerance over {ev['examples']} examples): folded into plain layers"


def prune_checkpoint(
    path: str | Path,
    out: str | Path,
    settings: PruneSettings,
    device: torch.device,
    *,
    data: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compact the checkpoint ``path`` into ``out``; returns the report (also written as report.json)."""
    say = on_stage or (lambda _: None)
    path, out = Path(path), Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or is_checkpoint(out))):
        raise CheckpointError(f"{out} exists and is not a sparsearch checkpoint; refusing to overwrite it")
    if out.resolve() == path.resolve():
        raise ConfigError(f"--out {out} is the source checkpoint; choose another directory")
    source = load_checkpoint(path, device)
    if "compaction" in source.meta:
        raise CheckpointError(f"{path}: already a compacted model (made by sparsearch prune)")
    model = source.model
    datasets = checkpoint_data(source, data)
    batches = list(itertools.islice(datasets.train.batches(settings.batch_size), settings.calib_batches))
    say(f"calibrating on {len(batches)} batches of {datasets.spec} (train split)")
    cal = calibrate(model, batches, device)

    net = find_network(model)
    graph_report: dict[str, Any] | None = None
    edits: list[dict[str, Any]] = []
    dead: set[str] = set()
    graph = None
    if isinstance(net, SparseResNeXt) and any(isinstance(m, GateConnectModule) for m in net.modules()):
        graph = connectivity_graph(net)
        rounds = dead_blocks(graph)
        dead = {n for r in rounds for n in r}
        summaries = module_summaries(graph, dead)
        graph_report = {
            "nodes": graph.number_of_nodes(),
            "edges": graph.number_of_edges(),
            "dead": len(dead),
            "cascade": rounds,
            "modules": [s.to_dict() for s in summaries],
        }
        edits += branch_edits(net, _net_prefix(model), dead)
    edits += usage_edits(cal, settings.threshold, settings.tolerance)

    say(f"compacting: {len(edits)} edits")
    compact = copy.deepcopy(model)
    apply_edits(compact, [{k: v for k, v in e.items() if k != "evidence"} for e in edits])
    compact.to(device).eval()
    # Checked in float64, where an exact compaction gives equal outputs; float32 results differ by the
    # rounding of re-associated sums (grouped convolutions with fewer groups), which is reported beside
    # the source's own float32 rounding error.
    source64 = _outputs(model, batches, device, torch.float64)
    diff = _max_diff(source64, _outputs(compact, batches, device, torch.float64))
    diff32 = _max_diff(cal.outputs, _outputs(compact, batches, device, torch.float32))
    rounding32 = _max_diff(cal.outputs, source64)
    exact = all(e["op"] in EXACT_OPS for e in edits)
    check_equivalence(exact, diff, settings.atol)

    say("evaluating on the validation split")
    task, eval_batch = datasets.task, max(settings.batch_size, 256)
    before_acc = evaluate(model, datasets.val, task, eval_batch, device).accuracy
    after_acc = evaluate(compact, datasets.val, task, eval_batch, device).accuracy
    check_accuracy(exact, before_acc, after_acc, settings.max_drop)
    channels_report = None
    final = compact
    if settings.channels is not None:
        from sparsearch.compact.channels import prune_channels

        say(f"pruning {settings.channels:.0%} of the inner channels ({settings.importance})")
        final = copy.deepcopy(compact)
        net_prefix = _net_prefix(final)
        channel_edits = prune_channels(
            find_network(final), batches[0].images.to(device), settings.channels, settings.importance, settings.round_to
        )
        for edit in channel_edits:
            edit["module"] = f"{net_prefix}.{edit['module']}" if net_prefix else edit["module"]
        edits += channel_edits
        channels_report = {
            "ratio": settings.channels,
            "importance": settings.importance,
            "round_to": settings.round_to,
            "layers": len(channel_edits),
        }
    finetune_report = None
    if settings.finetune_epochs:
        say(f"fine-tuning for {settings.finetune_epochs} epochs")
        train = _finetune_settings(source.meta.get("training", {}), settings.finetune_epochs)
        fit(final, datasets, train, device)
        final.eval()
        finetune_report = {"epochs": settings.finetune_epochs, "lr": train.lr}
    final_acc = after_acc if final is compact else evaluate(final, datasets.val, task, eval_batch, device).accuracy

    say("measuring costs and latency")
    example = datasets.val.batch(torch.arange(1)).to(device)
    costs = {"before": _costs(model, example), "after": _costs(final, example)}
    latency = _latency(model, final, datasets.val, settings.latency_batches, device)

    report: dict[str, Any] = {
        "source": str(path),
        "out": str(out),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"task": source.spec.task, "network": type(net).__name__},
        "data": datasets.spec,
        "calibration": {"split": "train", "batches": len(batches), "examples": cal.examples},
        "settings": asdict(settings),
        "graph": graph_report,
        "removals": [{**e, "summary": _describe(e)} for e in edits if e["op"] != "channels"],
        "equivalence": {
            "max_abs_diff": diff,
            "dtype": "float64",
            "max_abs_diff_float32": diff32,
            "source_float32_rounding": rounding32,
            "atol": settings.atol,
            "exact": exact,
            "on": f"{cal.examples} calibration examples",
            "passed": (diff <= settings.atol) if exact else (before_acc - after_acc <= settings.max_drop),
        },
        "accuracy": {"split": "val", "examples": len(datasets.val), "before": before_acc, "compacted": after_acc},
        "channels": channels_report,
        "finetune": finetune_report,
        "costs": costs,
        "latency": latency,
        "device": str(device),
        "units": "per example; FLOPs = 2 x MACs; network = the CNN (analytic), model = everything (FlopCounterMode)",
    }
    if final is not compact:
        report["accuracy"]["final"] = final_acc
    _write(out, path, source, final, edits, datasets, report, graph, dead, example, settings, say)
    return json.loads(json.dumps(report))  # what report.json holds (tuples as lists)


def _write(out, path, source, model, edits, datasets, report, graph, dead, example, settings, say) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.prune-", dir=out.parent))
    try:
        stored = [{k: v for k, v in e.items() if k != "evidence"} for e in edits]
        meta = {k: v for k, v in source.meta.items() if k in ("space", "data", "training")}
        ckpt = save_checkpoint(
            work / "model",
            model,
            source.spec,
            **meta,
            compaction={"source": str(path), "source_sha256": source.meta["weights"]["sha256"], "edits": stored},
            metrics={"split": "val", "val_accuracy": report["accuracy"].get("final", report["accuracy"]["compacted"])},
            created=report["created"],
        )
        if settings.export:
            say("exporting with torch.export")
            two = datasets.val.batch(torch.arange(min(2, len(datasets.val)))).to(
                example.images.device
            )  # batch 1 would specialise
            inputs = (two.images,) if two.tokens is None else (two.images, two.tokens, two.lengths)
            diff = export_program(model, inputs, ckpt / PROGRAM_FILE, settings.atol)
            report["export"] = {"file": PROGRAM_FILE, "max_abs_diff": diff, "dynamic": ["batch"]}
        if graph is not None:
            from sparsearch.compact.picture import draw_connectivity

            draw_connectivity(
                graph, dead, ckpt / PICTURE, f"{path.name}: learned connectivity, {len(dead)} dead branches"
            )
            report["picture"] = PICTURE
        (ckpt / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        from sparsearch.compact.report import markdown

        (ckpt / REPORT_MD).write_text(markdown(report))
        move_into_place(ckpt, out)  # a previous output is replaced only once the new one is complete
    except WriteError as err:  # the compacted checkpoint, written inside the work directory
        raise WriteError.of("compacted checkpoint", out, err.__cause__ or err, existed=out.exists()) from err
    except OSError as err:  # a full disk, a read-only directory
        raise WriteError.of("compacted checkpoint", out, err, existed=out.exists()) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
