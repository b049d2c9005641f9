"""Side-by-side timings of the conditional layers' executions, as ratios measured in one run.

Top-k block (C = 32, d = 4, 256 channels, 28×28, eval): sparse and masked executions against the
fastest dense execution of the same block, which is the faster of the plain grouped-conv block
(nn.Conv2d, every path, no gate) and the same block through the sparse code path (bmm) at k = C.

CondConv (n = 8, 256 -> 256 channels, 14×14, eval): mixed-kernel form against the mixture-of-experts
form, and the form ``execution="auto"`` picks.

Usage: python benchmarks/bench_layers.py [--json] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from sparsearch.layers import CondConv2d, TopKBottleneck
from sparsearch.layers.condconv import pick_form


def _time_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Best and median wall time of each function in ms, interleaved so machine noise hits all alike.

    Ratios use the best time: interference from other processes only ever adds time (the ``timeit``
    convention). The order rotates every round: a run is measurably faster right after one that freed
    large buffers (allocator reuse), so each variant follows each other equally often.
    """
    for fn in fns.values():  # warm-up
        fn()
        fn()
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repeats * len(names)):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"best": min(s), "median": statistics.median(s)} for name, s in samples.items()}


def bench_topk(repeats: int) -> list[dict[str, object]]:
    c, d, ch, hw = 32, 4, 256, 28
    rows = []
    for batch in (1, 32):
        x = torch.randn(batch, ch, hw, hw)
        plain = TopKBottleneck(ch, ch, c, d, k=c, routing="constant").eval()
        plain_gather = TopKBottleneck(ch, ch, c, d, k=c, routing="constant").eval()
        plain_gather.load_state_dict(plain.state_dict())
        plain.execution = "masked"  # nn.Conv2d reduce, grouped 3×3 and expand over every path
        dense = {"dense_conv": lambda p=plain, x=x: p(x), "dense_gather": lambda p=plain_gather, x=x: p(x)}
        base = _time_ms(dense, repeats)
        fastest = min(base, key=lambda name: base[name]["best"])
        for k in (32, 16, 8, 4):
            sparse = TopKBottleneck(ch, ch, c, d, k=k).eval()
            masked = TopKBottleneck(ch, ch, c, d, k=k, execution="masked").eval()
            masked.load_state_dict(sparse.state_dict())
            t = _time_ms(
                {"dense": dense[fastest], "sparse": lambda b=sparse, x=x: b(x), "masked": lambda m=masked, x=x: m(x)},
                repeats,
            )
            rows.append(
                {
                    "batch": batch,
                    "k": k,
                    "C": c,
                    "ideal": c / k,
                    "speedup": t["dense"]["best"] / t["sparse"]["best"],
                    "speedup_median": t["dense"]["median"] / t["sparse"]["median"],
                    "masked_speedup": t["dense"]["best"] / t["masked"]["best"],
                    "dense": fastest,
                    "ms": t,
                }
            )
    return rows


def bench_condconv(repeats: int) -> list[dict[str, object]]:
    rows = []
    for kernel in (1, 3):
        layer = CondConv2d(256, 256, kernel, padding=kernel // 2, num_experts=8).eval()
        for batch in (1, 32):
            x = torch.randn(batch, 256, 14, 14)
            alpha = layer.route(x)

            def run(
                form: str, layer: CondConv2d = layer, x: torch.Tensor = x, alpha: torch.Tensor = alpha
            ) -> torch.Tensor:
                layer.execution = form
                return layer(x, alpha)

            t = _time_ms({form: (lambda f=form: run(f)) for form in ("experts", "mixed", "auto")}, repeats)
            rows.append(
                {
                    "batch": batch,
                    "kernel_size": kernel,
                    "experts": 8,
                    "speedup": t["experts"]["best"] / t["mixed"]["best"],
                    "speedup_median": t["experts"]["median"] / t["mixed"]["median"],
                    "form": pick_form(batch, 8, layer._kernel_numel, layer._conv_macs(x)),
                    "faster_form": "mixed" if t["mixed"]["best"] <= t["experts"]["best"] else "experts",
                    "auto_vs_experts": t["experts"]["best"] / t["auto"]["best"],
                    "ms": t,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of timed runs; each round runs every variant once per position"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    torch.manual_seed(0)
    with torch.inference_mode():
        result = {
            "threads": torch.get_num_threads(),
            "topk": bench_topk(args.repeats),
            "condconv": bench_condconv(args.repeats),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"top-k block, C=32 d=4 256ch 28x28, {result['threads']} threads; speedup vs fastest dense (best times)")
    for r in result["topk"]:
        print(
            f"  batch {r['batch']:>2} k {r['k']:>2}: sparse {r['speedup']:5.2f}x "
            f"(ideal {r['ideal']:4.1f}x, {r['speedup'] / r['ideal']:.2f} of ideal; "
            f"median {r['speedup_median']:.2f}x), masked {r['masked_speedup']:4.2f}x, dense={r['dense']}"
        )
    print("CondConv n=8 256ch 14x14; mixed-kernel vs mixture-of-experts form (best times)")
    for r in result["condconv"]:
        print(
            f"  batch {r['batch']:>2} {r['kernel_size']}x{r['kernel_size']}: mixed {r['speedup']:5.2f}x, "
            f"auto picks {r['form']} (faster: {r['faster_form']}), "
            f"auto {r['auto_vs_experts']:.2f}x experts"
        )


if __name__ == "__main__":
    main()
