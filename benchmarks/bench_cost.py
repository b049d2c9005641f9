"""Speed of the analytic cost count against building the model and counting with FlopCounterMode or
thop, on one configuration of the default space (ResNeXt-101 32x4d at 448×448, k = 16 everywhere).

Usage: python benchmarks/bench_cost.py [--json] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sparsearch.cost import count
from sparsearch.cost.verify import flop_counter_flops, thop_macs
from sparsearch.models import build_model
from sparsearch.spaces import get_space


def _best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the counters that build a model")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    space = get_space("default")
    values = {
        f"{s}.{knob}": v
        for s in ("conv2", "conv3", "conv4", "conv5")
        for knob, v in (("k", 16), ("routing", "softmax"))
    }
    config = space.target_config(values)
    x = torch.randn(1, 3, config.input_size, config.input_size)

    def build_and_count(counter):
        return lambda: counter(build_model(config).eval(), x)

    analytic = _best_ms(lambda: count(config), 200)
    counter = _best_ms(build_and_count(flop_counter_flops), args.repeats)
    thop = _best_ms(build_and_count(thop_macs), args.repeats)
    result = {
        "config": "default space, k=16 and softmax routing in every stage",
        "analytic_ms": analytic,
        "flop_counter_ms": counter,
        "thop_ms": thop,
        "flop_counter_vs_analytic": counter / analytic,
        "thop_vs_analytic": thop / analytic,
        "executed_flops": count(config).executed_flops,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['config']}: {result['executed_flops']:,} FLOPs per example")
    print(f"  analytic count (no model)        {analytic:9.3f} ms")
    print(f"  build + FlopCounterMode forward  {counter:9.1f} ms  ({counter / analytic:,.0f}x)")
    print(f"  build + thop forward             {thop:9.1f} ms  ({thop / analytic:,.0f}x)")


if __name__ == "__main__":
    main()
