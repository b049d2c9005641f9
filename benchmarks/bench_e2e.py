"""End to end: the default target (ResNeXt-101 32x4d at 448×448) dense against k = C/2, C/4, C/8 in every
stage, batch 1 and 8, measured interleaved in one process; each speed-up beside its FLOPs ratio and a measured
floor.

Both networks run their inference form (:func:`sparsearch.models.inference.for_inference`: batch norms folded,
epilogues fused, paths gathered whole), as an inference engine would run either. Dense is the plain ResNeXt:
every block at k = C in its masked execution (one grouped convolution per block, no gathers). The conditional
networks run their sparse execution (softmax gate).

- ``efficiency`` = speed-up / FLOPs ratio (1.0: time falls as FLOPs do);
- ``floor_ms`` = what the sparse network would take if its blocks ran at the dense blocks' rate: the time of
  the part both networks share (stem and head, measured alone) + the rest of the dense time × the blocks'
  executed / dense FLOPs; ``floor_efficiency`` = floor_ms / sparse_ms: 1.0 means no overhead left beyond what
  FLOPs count. The gap between ``floor_efficiency`` and ``efficiency`` is the shared part's;
- ``eager_sparse_ms``: the same sparse network in its training form (eval mode, no folding), measured against
  the inference form in the same process: what the inference form saves.

``--study NAME`` also times the study's cheapest Pareto configuration at ≤ 1/4 of the dense FLOPs against dense
at batch 1 (the study's own storage, ``studies/NAME.db``, read from a copy).

Usage: python benchmarks/bench_e2e.py [--json] [--batches 1 8] [--rounds 3] [--input-size 448]
       [--channels-last] [--compile] [--study default-50GFLOPs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from sparsearch.cost import count
from sparsearch.spaces import get_space
from sparsearch.study.target_latency import build_for_timing
from sparsearch.train.latency import compare, forward, measure
from sparsearch.train.machine import describe_machine

FRACTIONS = (2, 4, 8)  # k = C / fraction
SHARED_KINDS = ("stem", "classifier", "conv")  # cost-report parts both networks run alike


def _model(config, dense: bool, channels_last: bool, compiled: bool, inference: bool = True):
    model = build_for_timing(config, dense, inference=inference)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model, dynamic=False)
    return model


def _block_macs(config) -> tuple[int, int]:
    """(executed, shared) MACs per example: the whole network's, and its stem's and head's."""
    report = count(config)
    return report.executed_macs, sum(layer.executed_macs for layer in report.layers if layer.kind in SHARED_KINDS)


def _shared_ms(model, x: torch.Tensor) -> float:
    """The stem and head of an inference-form ResNeXt, each timed alone (the head on the body's output)."""
    ms = measure(forward(model.stem, x)).ms
    if not isinstance(model.head, torch.nn.Identity):
        with torch.inference_mode():
            grid = model.stem(x)
            for block in model.blocks.values():
                grid = block(grid)
        ms += measure(forward(model.head, grid)).ms
    return ms


def _cheapest_pareto(study_name: str, dense_flops: int) -> tuple[int, dict]:
    """(trial number, values) of the study's cheapest Pareto configuration at ≤ 1/4 of ``dense_flops``."""
    import optuna

    from sparsearch.study.pareto import pareto_front
    from sparsearch.study.progress import study_points

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = Path("studies") / f"{study_name}.db"
    if not source.is_file():
        raise SystemExit(f"bench_e2e: no study storage {source}")
    with tempfile.TemporaryDirectory() as tmp:  # read a copy: the study's directory stays as it is
        copy = Path(tmp) / "study.db"
        shutil.copyfile(source, copy)
        study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{copy}")
        front = [p for p in pareto_front(study_points(study)) if 4 * p.flops <= dense_flops]
        if not front:
            raise SystemExit(f"bench_e2e: study {study_name} has no Pareto configuration at <= 1/4 of dense FLOPs")
        cheapest = min(front, key=lambda p: p.flops)
        trial = study.get_trials(deepcopy=False)[cheapest.number]
        return cheapest.number, dict(trial.user_attrs["values"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per comparison")
    parser.add_argument("--input-size", type=int, default=None, help="default: the target's (448)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--study", default=None, help="also time this study's cheapest Pareto configuration")
    args = parser.parse_args()
    if args.rounds < 1 or any(b < 1 for b in args.batches):
        parser.error("--rounds and --batches must be >= 1")
    space = get_space("default")
    base = space.target_config()
    size = args.input_size or base.input_size
    cardinality = base.stages[0].cardinality

    def sized(config):
        return replace(config, input_size=size) if args.input_size else config

    dense_config = sized(space.target_config())
    dense = _model(dense_config, True, args.channels_last, args.compile)
    dense_macs, shared_macs = _block_macs(dense_config)
    shared = {}
    rows = []
    for fraction in FRACTIONS:
        k = cardinality // fraction
        config = sized(space.target_config(space.expand({"k": k, "routing": "softmax"})))
        sparse = _model(config, False, args.channels_last, args.compile)
        eager = _model(config, False, args.channels_last, args.compile, inference=False)
        macs, _ = _block_macs(config)
        flops_ratio = dense_macs / macs
        block_fraction = (macs - shared_macs) / (dense_macs - shared_macs)
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if batch not in shared:
                shared[batch] = _shared_ms(dense, x) if not args.compile else 0.0
            c = compare(forward(dense, x), forward(sparse, x), rounds=args.rounds)
            e = compare(forward(eager, x), forward(sparse, x), rounds=args.rounds)
            floor = shared[batch] + (c.reference.ms - shared[batch]) * block_fraction
            rows.append(
                {
                    "k": f"C/{fraction}",
                    "batch": batch,
                    "dense_ms": c.reference.ms,
                    "dense_iqr_ms": c.reference.iqr * 1e3,
                    "sparse_ms": c.candidate.ms,
                    "sparse_iqr_ms": c.candidate.iqr * 1e3,
                    "speedup": c.ratio,
                    "flops_ratio": flops_ratio,
                    "efficiency": c.ratio / flops_ratio,
                    "shared_ms": shared[batch],
                    "floor_ms": floor,
                    "floor_efficiency": floor / c.candidate.ms,
                    "eager_sparse_ms": e.reference.ms,
                    "inference_gain": e.ratio,
                }
            )
    result = {
        "benchmark": "bench_e2e",
        "target": f"{space.target_args['model']} at {size}x{size}",
        "options": {"channels_last": args.channels_last, "compile": args.compile},
        "machine": describe_machine(),
        "rows": rows,
        "goal": "efficiency >= 0.75 at k = C/8 and >= 0.85 at C/4, batch 1; >= 0.8 at C/8, batch 8",
        "met": _met(rows),
    }
    if args.study:
        number, values = _cheapest_pareto(args.study, count(space.target_config()).executed_flops)
        config = sized(space.target_config(values))
        model = _model(config, False, args.channels_last, args.compile)
        x = torch.randn(1, 3, size, size)
        c = compare(forward(dense, x), forward(model, x), rounds=args.rounds)
        result["study"] = {
            "study": args.study,
            "trial": number,
            "values": values,
            "flops_ratio": dense_macs / _block_macs(config)[0],
            "dense_ms": c.reference.ms,
            "ms": c.candidate.ms,
            "speedup": c.ratio,
            "goal": ">= 3.5x at batch 1",
            "met": c.ratio >= 3.5,
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['target']}, {result['machine']['cpu']}, {result['machine']['threads']} threads, {result['options']}"
    )
    for r in rows:
        print(
            f"k = {r['k']:>4}, batch {r['batch']}: dense {r['dense_ms']:.1f} ms, sparse {r['sparse_ms']:.1f} ms "
            f"(training form {r['eager_sparse_ms']:.1f}), speed-up {r['speedup']:.2f}x for {r['flops_ratio']:.2f}x "
            f"fewer FLOPs (efficiency {r['efficiency']:.2f}; floor {r['floor_ms']:.1f} ms, "
            f"{r['floor_efficiency']:.2f} of it)"
        )
    if "study" in result:
        s = result["study"]
        print(
            f"study {s['study']} trial {s['trial']}: {s['ms']:.1f} ms vs dense {s['dense_ms']:.1f} ms, "
            f"{s['speedup']:.2f}x for {s['flops_ratio']:.2f}x fewer FLOPs"
        )


def _met(rows: list[dict]) -> dict[str, bool]:
    goals = {("C/8", 1): 0.75, ("C/4", 1): 0.85, ("C/8", 8): 0.8}
    return {
        f"{k} batch {b}": r["efficiency"] >= bar
        for (k, b), bar in goals.items()
        for r in rows
        if (r["k"], r["batch"]) == (k, b)
    }


if __name__ == "__main__":
    main()
