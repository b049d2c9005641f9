"""The GPU strategy, measured: the default target (ResNeXt-101 32x4d at 448×448) dense against k = C/4 and C/8
on a CUDA device, in half precision, batch 1, 8 and 64, each sparse network run two ways:

- ``gather``: each example's k paths gathered and run with batched products, the 3×3 with the batch folded
  into the groups (the CPU's form);
- ``grouped``: the batch's (example, path) pairs grouped by path, padded to the fullest path, each product run
  for all paths at once (:mod:`sparsearch.layers.fused_topk`).

All three networks run their inference form (:func:`sparsearch.models.inference.for_inference`), timed with
``sparsearch.train.latency.compare`` (CUDA-synchronised, interleaved with dense in one process). About three
minutes on one H200. Without CUDA it stops with one line, unless ``--device cpu`` asks for the CPU (a check of
the script, not a GPU figure).

Usage: python benchmarks/bench_gpu.py [--json] [--batches 1 8 64] [--dtypes float16 bfloat16] [--rounds 2]
       [--input-size 448] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from sparsearch.cost import count
from sparsearch.models.inference import for_inference
from sparsearch.spaces import get_space
from sparsearch.study.target_latency import build_for_timing
from sparsearch.train.latency import compare, forward
from sparsearch.train.machine import describe_machine

FRACTIONS = (4, 8)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=None, help="default: the target's (448)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.rounds < 1 or any(b < 1 for b in args.batches):
        parser.error("--rounds and --batches must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine (the GPU figures need one)", file=sys.stderr)
        raise SystemExit(2)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    space = get_space("default")
    size = args.input_size or space.target_config().input_size

    def sized(config):
        return replace(config, input_size=size)

    cardinality = space.target_config().stages[0].cardinality
    dense_config = sized(space.target_config())
    dense_macs = count(dense_config).executed_macs
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        dense = build_for_timing(dense_config, dense=True).to(device, dtype)
        for fraction in FRACTIONS:
            config = sized(space.target_config(space.expand({"k": cardinality // fraction, "routing": "softmax"})))
            plain = build_for_timing(config, inference=False)
            models = {s: for_inference(plain, s).to(device, dtype) for s in ("gather", "grouped")}
            ratio = dense_macs / count(config).executed_macs
            for batch in args.batches:
                x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
                with torch.inference_mode():
                    diff = float((models["gather"](x) - models["grouped"](x)).abs().max())
                row = {"dtype": dtype_name, "k": f"C/{fraction}", "batch": batch, "flops_ratio": ratio, "diff": diff}
                for strategy, model in models.items():
                    c = compare(forward(dense, x), forward(model, x), rounds=args.rounds, cuda=cuda)
                    row[f"dense_ms_{strategy}"] = c.reference.ms
                    row[f"{strategy}_ms"] = c.candidate.ms
                    row[f"{strategy}_speedup"] = c.ratio
                    row[f"{strategy}_efficiency"] = c.ratio / ratio
                rows.append(row)
                if cuda:
                    torch.cuda.empty_cache()
    machine = describe_machine()
    if cuda:
        machine["gpu"] = torch.cuda.get_device_name(device)
    result = {
        "benchmark": "bench_gpu",
        "target": f"resnext101_32x4d at {size}x{size}",
        "machine": machine,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['target']}, {machine.get('gpu', machine['cpu'])}")
    for r in rows:
        print(
            f"{r['dtype']}, k = {r['k']}, batch {r['batch']}: dense {r['dense_ms_gather']:.2f} ms, "
            f"gather {r['gather_ms']:.2f} ms ({r['gather_speedup']:.2f}x), grouped {r['grouped_ms']:.2f} ms "
            f"({r['grouped_speedup']:.2f}x) for {r['flops_ratio']:.2f}x fewer FLOPs"
        )


if __name__ == "__main__":
    main()
