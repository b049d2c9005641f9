"""Compaction of GateConnect K = 1: the {29, 8, 8} CIFAR network trained briefly on digits (32×32),
pruned with ``sparsearch prune``'s library call; parameters and executed FLOPs before -> after, and
latency of source and compacted model measured side by side (alternating) at batch 1 and 32.

Target: latency reduction >= 0.8 × executed-FLOPs reduction (reduction = 1 - after/before).
Seed 003 reports 0.86M -> 0.65M parameters (-24%) for K = 1 on CIFAR-10 after full training.

Usage: python benchmarks/bench_compact.py [--json] [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from sparsearch.compact.prune import PruneSettings, prune_checkpoint
from sparsearch.spaces import get_space
from sparsearch.train import default_settings, train_space
from sparsearch.train.checkpoint import load_checkpoint
from sparsearch.train.latency import compare, forward
from sparsearch.train.run import checkpoint_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--steps", type=int, default=40, help="training steps (batch 64) before pruning")
    parser.add_argument("--repeats", type=int, default=10, help="alternating timing rounds per batch size")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    space = get_space("gateconnect_cifar")
    values = space.expand({"fan_in": 1})
    settings = default_settings("classification", epochs=1, steps_per_epoch=args.steps)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        source_dir, out = Path(tmp) / "source", Path(tmp) / "compact"
        start = time.perf_counter()
        run = train_space(space, values, settings, device, data="digits", network="target", out=source_dir)
        train_s = time.perf_counter() - start
        report = prune_checkpoint(source_dir, out, PruneSettings(calib_batches=4), device)
        source, compact = load_checkpoint(source_dir).model, load_checkpoint(out).model
        data = checkpoint_data(load_checkpoint(source_dir))
    b, a = report["costs"]["before"], report["costs"]["after"]
    flops_reduction = 1 - a["network_executed_flops"] / b["network_executed_flops"]
    rows = []
    for size in (1, 32):
        batch = data.val.batch(torch.arange(size))
        c = compare(forward(source, batch), forward(compact, batch), rounds=args.repeats)  # interleaved
        tb, ta = c.reference.median, c.candidate.median
        reduction = 1 - ta / tb
        rows.append(
            {
                "batch": size,
                "before_ms": tb * 1e3,
                "after_ms": ta * 1e3,
                "speedup": tb / ta,
                "latency_reduction": reduction,
                "target_reduction": 0.8 * flops_reduction,
                "met": reduction >= 0.8 * flops_reduction,
            }
        )
    result = {
        "network": "gateconnect_cifar {29, 8, 8}, fan_in 1, 32x32, 10 classes (digits)",
        "train_steps": args.steps,
        "train_seconds": train_s,
        "val_accuracy": run.val.accuracy,
        "params_before": b["params"],
        "params_after": a["params"],
        "params_reduction": 1 - a["params"] / b["params"],
        "executed_flops_before": b["network_executed_flops"],
        "executed_flops_after": a["network_executed_flops"],
        "flops_reduction": flops_reduction,
        "flop_counter_after": a["model_flops"],
        "dead_branches": report["graph"]["dead"],
        "modules": report["graph"]["modules"],
        "equivalence_max_abs_diff": report["equivalence"]["max_abs_diff"],
        "accuracy_before": report["accuracy"]["before"],
        "accuracy_after": report["accuracy"]["compacted"],
        "latency": rows,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['network']}: trained {args.steps} steps ({train_s:.0f} s), val accuracy {run.val.accuracy:.3f}")
    print(
        f"dead branches {result['dead_branches']}; params {b['params']:,} -> {a['params']:,} "
        f"({-result['params_reduction']:+.1%}); executed FLOPs {b['network_executed_flops'] / 1e6:.1f}M -> "
        f"{a['network_executed_flops'] / 1e6:.1f}M ({-flops_reduction:+.1%})"
    )
    for r in rows:
        print(
            f"batch {r['batch']:>2}: {r['before_ms']:.2f} -> {r['after_ms']:.2f} ms, "
            f"latency -{r['latency_reduction']:.1%}"
            f" (target >= -{r['target_reduction']:.1%}): {'met' if r['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
