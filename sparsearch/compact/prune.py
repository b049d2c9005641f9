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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import Tensor, nn

from sparsearch.choices import IMPORTANCES
from sparsearch.compact.calibration import Calibration, calibrate, usage_edits
from sparsearch.compact.export import PROGRAM_FILE, export_program, padded_questions, write_contract
from sparsearch.compact.graph import connectivity_graph, dead_blocks, module_summaries
from sparsearch.cost.walk import find_network, network_cost
from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.layers import GateConnectModule
from sparsearch.models import SparseResNeXt
from sparsearch.models.edits import Edit, apply_edits
from sparsearch.models.inference import for_inference
from sparsearch.safe_io import atomic_dir, refuse_foreign
from sparsearch.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    Compaction,
    is_checkpoint,
    load_checkpoint,
    write_checkpoint_files,
)
from sparsearch.train.latency import compare, forward
from sparsearch.train.loop import evaluate, fit, forward_batch, resolve_device
from sparsearch.train.run import checkpoint_data, model_flops
from sparsearch.train.settings import TrainSettings

__all__ = [
    "EditPlan",
    "PruneError",
    "PruneSettings",
    "Verification",
    "branch_edits",
    "measure",
    "plan_edits",
    "prune_checkpoint",
    "refine",
    "verify",
    "write_output",
]

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
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"importance={self.importance!r}; allowed: {', '.join(IMPORTANCES)}")
        if not isinstance(self.finetune_epochs, int) or self.finetune_epochs < 0:
            raise ConfigError(f"finetune-epochs={self.finetune_epochs!r} must be a non-negative integer")


def _net_prefix(model: nn.Module) -> str:
    net = find_network(model)
    return next(name for name, m in model.named_modules() if m is net)


def branch_edits(net: SparseResNeXt, prefix: str, dead: set[str]) -> list[Edit]:
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
        edits.append(Edit("branches", name, {"keep": keep, "sources": sources, "num_inputs": num_inputs}, evidence))
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
    """The source and the compacted model, measured interleaved per batch size, each in its inference form."""
    before, after = for_inference(before), for_inference(after)
    rows = []
    for size in sizes:
        size = min(size, len(split))
        batch = split.batch(torch.arange(size)).to(device)
        c = compare(forward(before, batch), forward(after, batch), cuda=device.type == "cuda")
        rows.append(
            {
                "batch": size,
                "before_ms": c.reference.ms,
                "after_ms": c.candidate.ms,
                "before_iqr_ms": c.reference.iqr * 1e3,
                "after_iqr_ms": c.candidate.iqr * 1e3,
                "speedup": c.ratio,
                "threads": c.reference.threads,
            }
        )
    return rows


def _describe(edit: Edit) -> str:
    op, ev, kept = edit.op, edit.evidence or {}, len(edit.args.get("keep", []))
    if op == "branches":
        dead = ev.get("dead", [])
        return f"{kept} live branches kept, {len(dead)} dead removed {dead}; gates -> fixed averages"
    if op == "paths":
        return f"paths {ev['removed']} never selected in {ev['examples']} examples; {kept} kept"
    if op == "experts":
        return f"experts {ev['removed']} never reached routing weight {ev['threshold']}; {kept} kept"
    return f"routing constant (std <= tolerance over {ev['examples']} examples): folded into plain layers"


@dataclass
class EditPlan:
    """Stage 1: what calibration and the connectivity graph say to remove, as edits with their evidence."""

    calibration: Calibration
    edits: list[Edit]
    graph: nx.DiGraph | None = None  # GateConnect networks: the connectivity graph
    dead: set[str] = field(default_factory=set)  # its dead branches
    graph_report: dict[str, Any] | None = None

    @property
    def exact(self) -> bool:
        """Every edit keeps the outputs (on the calibration data)."""
        return all(e.op in EXACT_OPS for e in self.edits)


@dataclass(frozen=True)
class Verification:
    """Stage 2: the compacted model against its source: outputs (float64 and float32) and accuracy."""

    max_abs_diff: float  # float64
    max_abs_diff_float32: float
    source_float32_rounding: float
    accuracy_before: float
    accuracy_after: float


def plan_edits(model: nn.Module, batches: list, settings: PruneSettings, device: torch.device) -> EditPlan:
    """Calibrate ``model`` on ``batches`` and plan the edits: dead GateConnect branches from the
    connectivity graph, never-used paths and experts and constant routings from calibration."""
    cal = calibrate(model, batches, device)
    plan = EditPlan(cal, [])
    net = find_network(model)
    if any(isinstance(m, GateConnectModule) for m in net.modules()):  # only the ResNeXt family has them
        plan.graph = connectivity_graph(net)
        rounds = dead_blocks(plan.graph)
        plan.dead = {n for r in rounds for n in r}
        plan.graph_report = {
            "nodes": plan.graph.number_of_nodes(),
            "edges": plan.graph.number_of_edges(),
            "dead": len(plan.dead),
            "cascade": rounds,
            "modules": [s.to_dict() for s in module_summaries(plan.graph, plan.dead)],
        }
        plan.edits += branch_edits(net, _net_prefix(model), plan.dead)
    plan.edits += usage_edits(cal, settings.threshold, settings.tolerance)
    return plan


def verify(
    model: nn.Module, compact: nn.Module, plan: EditPlan, batches: list, datasets, settings: PruneSettings, device
) -> Verification:
    """Compare ``compact`` with ``model``; raises :class:`PruneError` when a check fails.

    Checked in float64, where an exact compaction gives equal outputs; float32 results differ by the
    rounding of re-associated sums (grouped convolutions with fewer groups), which is reported beside
    the source's own float32 rounding error. Usage-based removals are checked on validation accuracy.
    """
    source64 = _outputs(model, batches, device, torch.float64)
    diff = _max_diff(source64, _outputs(compact, batches, device, torch.float64))
    diff32 = _max_diff(plan.calibration.outputs, _outputs(compact, batches, device, torch.float32))
    rounding32 = _max_diff(plan.calibration.outputs, source64)
    check_equivalence(plan.exact, diff, settings.atol)
    before = _val_accuracy(model, datasets, settings, device)
    after = _val_accuracy(compact, datasets, settings, device)
    check_accuracy(plan.exact, before, after, settings.max_drop)
    return Verification(diff, diff32, rounding32, before, after)


def _val_accuracy(model: nn.Module, datasets, settings: PruneSettings, device) -> float:
    return evaluate(model, datasets.val, datasets.task, max(settings.batch_size, 256), device).accuracy


def refine(
    compact: nn.Module, example: Tensor, source: Checkpoint, datasets, settings: PruneSettings, device, say
) -> tuple[nn.Module, list[Edit], dict[str, Any] | None, dict[str, Any] | None]:
    """Optional stages on a copy of ``compact``: channel pruning (its edits) and fine-tuning.
    Returns (final model, channel edits, channels report, fine-tuning report)."""
    final, edits, channels_report, finetune_report = compact, [], None, None
    if settings.channels is not None:
        from sparsearch.compact.channels import prune_channels

        say(f"pruning {settings.channels:.0%} of the inner channels ({settings.importance})")
        final = copy.deepcopy(compact)
        prefix = _net_prefix(final)
        found = prune_channels(find_network(final), example, settings.channels, settings.importance, settings.round_to)
        edits = [e.moved(prefix) for e in found]
        channels_report = {
            "ratio": settings.channels,
            "importance": settings.importance,
            "round_to": settings.round_to,
            "layers": len(edits),
        }
    if settings.finetune_epochs:
        say(f"fine-tuning for {settings.finetune_epochs} epochs")
        train = _finetune_settings(source.meta.training, settings.finetune_epochs)
        fit(final, datasets, train, device)
        final.eval()
        finetune_report = {"epochs": settings.finetune_epochs, "lr": train.lr}
    return final, edits, channels_report, finetune_report


def measure(model: nn.Module, final: nn.Module, datasets, settings: PruneSettings, device) -> dict[str, Any]:
    """Stage 3: analytic and counted costs before and after, and latency measured side by side."""
    example = datasets.val.batch(torch.arange(1)).to(device)
    return {
        "costs": {"before": _costs(model, example), "after": _costs(final, example)},
        "latency": _latency(model, final, datasets.val, settings.latency_batches, device),
    }


def prune_checkpoint(
    path: str | Path,
    out: str | Path,
    settings: PruneSettings,
    device: torch.device | str,
    *,
    data: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compact the checkpoint ``path`` into ``out``: plan edits -> verify -> measure -> write.
    Returns the report (also written as report.json). ``device``: a torch device, or its name."""
    device = resolve_device(device) if isinstance(device, str) else device
    say = on_stage or (lambda _: None)
    path, out = Path(path), Path(out)
    refuse_foreign(out, is_checkpoint, "a sparsearch checkpoint", CheckpointError)
    if out.resolve() == path.resolve():
        raise ConfigError(f"--out {out} is the source checkpoint; choose another directory")
    source = load_checkpoint(path, device)
    if source.meta.compaction is not None:
        raise CheckpointError(f"{path}: already a compacted model (made by sparsearch prune)")
    model = source.model
    datasets = checkpoint_data(source, data)
    batches = list(itertools.islice(datasets.train.batches(settings.batch_size), settings.calib_batches))
    say(f"calibrating on {len(batches)} batches of {datasets.spec} (train split)")
    plan = plan_edits(model, batches, settings, device)

    say(f"compacting: {len(plan.edits)} edits")
    compact = apply_edits(copy.deepcopy(model), plan.edits).to(device).eval()
    say("checking outputs and validation accuracy")
    check = verify(model, compact, plan, batches, datasets, settings, device)
    final, channel_edits, channels_report, finetune_report = refine(
        compact, batches[0].images.to(device), source, datasets, settings, device, say
    )
    edits = plan.edits + channel_edits
    final_acc = check.accuracy_after if final is compact else _val_accuracy(final, datasets, settings, device)

    say("measuring costs and latency")
    measured = measure(model, final, datasets, settings, device)
    report: dict[str, Any] = {
        "source": str(path),
        "out": str(out),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"task": source.spec.task, "network": type(find_network(model)).__name__},
        "data": datasets.spec,
        "calibration": {"split": "train", "batches": len(batches), "examples": plan.calibration.examples},
        "settings": asdict(settings),
        "graph": plan.graph_report,
        "removals": [{**e.reported(), "summary": _describe(e)} for e in edits if e.op != "channels"],
        "equivalence": {
            "max_abs_diff": check.max_abs_diff,
            "dtype": "float64",
            "max_abs_diff_float32": check.max_abs_diff_float32,
            "source_float32_rounding": check.source_float32_rounding,
            "atol": settings.atol,
            "exact": plan.exact,
            "on": f"{plan.calibration.examples} calibration examples",
            "passed": (check.max_abs_diff <= settings.atol)
            if plan.exact
            else (check.accuracy_before - check.accuracy_after <= settings.max_drop),
        },
        "accuracy": {
            "split": "val",
            "examples": len(datasets.val),
            "before": check.accuracy_before,
            "compacted": check.accuracy_after,
        },
        "channels": channels_report,
        "finetune": finetune_report,
        **measured,
        "device": str(device),
        "units": "per example; FLOPs = 2 x MACs; network = the CNN (analytic), model = everything (FlopCounterMode)",
    }
    if final is not compact:
        report["accuracy"]["final"] = final_acc
    compaction = Compaction(str(path), source.meta.weights_sha256, tuple(edits))
    write_output(out, source, final, compaction, datasets, report, plan, settings, say)
    return json.loads(json.dumps(report))  # what report.json holds (tuples as lists)


def write_output(
    out: Path,
    source: Checkpoint,
    model: nn.Module,
    compaction: Compaction,
    datasets,
    report: dict[str, Any],
    plan: EditPlan,
    settings: PruneSettings,
    say,
) -> None:
    """Stage 4: the compacted checkpoint, its exported program, picture and report, swapped in whole."""
    with atomic_dir(out, "compacted checkpoint") as tmp:
        meta = {k: v for k, v in source.meta.record.items() if k in ("space", "data", "training")}
        metrics = {"split": "val", "val_accuracy": report["accuracy"].get("final", report["accuracy"]["compacted"])}
        write_checkpoint_files(
            tmp, model, source.spec, **meta, compaction=compaction.to_dict(), metrics=metrics, created=report["created"]
        )
        if settings.export:
            say("exporting with torch.export")
            two = datasets.val.batch(torch.arange(min(2, len(datasets.val)))).to(next(model.parameters()).device)
            inputs = padded_questions(
                (two.images,) if two.tokens is None else (two.images, two.tokens, two.lengths)
            )  # batch 1 would specialise
            diff = export_program(model, inputs, tmp / PROGRAM_FILE, settings.atol)
            report["export"] = {"file": PROGRAM_FILE, "max_abs_diff": diff, "dynamic": ["batch"]}
            write_contract(tmp, source.spec, PROGRAM_FILE, {"max_abs_diff": diff, "atol": settings.atol})
        if plan.graph is not None:
            from sparsearch.compact.picture import draw_connectivity

            title = f"{Path(compaction.source).name}: learned connectivity, {len(plan.dead)} dead branches"
            draw_connectivity(plan.graph, plan.dead, tmp / PICTURE, title)
            report["picture"] = PICTURE
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        from sparsearch.compact.report import markdown

        (tmp / REPORT_MD).write_text(markdown(report))
