"""End to end: the default target (ResNeXt-101 32x4d at 448×448) dense against k = C/2, C/4, C/8 in every
stage, batch 1 and 8, measured interleaved in one process; each speed-up beside its FLOPs ratio.

Dense is the plain ResNeXt: every block at k = C runs its masked execution (one grouped convolution per
block, no gathers), which is what one would deploy without sparsearch. The conditional networks run their
sparse execution (softmax gate). ``efficiency`` = speed-up / FLOPs ratio (1.0: time falls as FLOPs do).

Options compare the ways to run the sparse network that the issue proposed; each is measured against the
same dense model in the same process:

- ``--channels-last``: both models and inputs in channels-last memory format;
- ``--compile``: both models through ``torch.compile`` (inductor; needs a C++ compiler).

Usage: python benchmarks/bench_e2e.py [--json] [--batches 1 8] [--rounds 3] [--input-size 448]
       [--channels-last] [--compile]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from sparsearch.cost import count
from sparsearch.spaces import get_space
from sparsearch.study.target_latency import build_for_timing
from sparsearch.train.latency import compare, forward
from sparsearch.train.machine import describe_machine

FRACTIONS = (2, 4, 8)  # k = C / fraction


def _model(config, dense: bool, channels_last: bool, compiled: bool):
    model = build_for_timing(config, dense)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model, dynamic=False)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per comparison")
    parser.add_argument("--input-size", type=int, default=None, help="default: the target's (448)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1 or any(b < 1 for b in args.batches):
        parser.error("--rounds and --batches must be >= 1")
    space = get_space("default")
    base = space.target_config()
    size = args.input_size or base.input_size
    cardinality = base.stages[0].cardinality
    dense_config = space.target_config()
    if args.input_size:
        dense_config = replace(dense_config, input_size=size)
    dense = _model(dense_config, True, args.channels_last, args.compile)
    dense_flops = count(dense_config).executed_flops
    rows = []
    for fraction in FRACTIONS:
        k = cardinality // fraction
        config = space.target_config(space.expand({"k": k, "routing": "softmax"}))
        if args.input_size:
            config = replace(config, input_size=size)
        sparse = _model(config, False, args.channels_last, args.compile)
        flops_ratio = dense_flops / count(config).executed_flops
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            c = compare(forward(dense, x), forward(sparse, x), rounds=args.rounds)
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
                }
            )
    result = {
        "benchmark": "bench_e2e",
        "target": f"{space.target_args['model']} at {size}x{size}",
        "options": {"channels_last": args.channels_last, "compile": args.compile},
        "machine": describe_machine(),
        "rows": rows,
        "goal": "k = C/8 at batch 1: efficiency >= 0.8",
        "met": next(r["efficiency"] >= 0.8 for r in rows if r["k"] == "C/8" and r["batch"] == 1)
        if 1 in args.batches
        else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['target']}, {result['machine']['cpu']}, {result['machine']['threads']} threads, {result['options']}"
    )
    for r in rows:
        print(
            f"k = {r['k']:>4}, batch {r['batch']}: dense {r['dense_ms']:.1f} ms, sparse {r['sparse_ms']:.1f} ms, "
            f"speed-up {r['speedup']:.2f}x for {r['flops_ratio']:.2f}x fewer FLOPs (efficiency {r['efficiency']:.2f})"
        )


if __name__ == "__main__":
    main()
