"""Training throughput on easy-VQA: samples/s per batch size for the default proxy and the CLEVR CNN
at k = C and k = C/2, and the minutes one epoch takes at each. Batch sizes run side by side.

Usage: python benchmarks/bench_train.py [--json] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sparsearch.data import load_data
from sparsearch.spaces import get_space
from sparsearch.train import build_task_model, default_settings
from sparsearch.train.loop import make_optimizer, train_step
from sparsearch.train.run import model_spec, network_config

CASES = (
    ("default", {}, "default proxy, knobs off"),
    ("clevr", {"k": 12, "routing": "relu_l1"}, "clevr k=12 of 12"),
    ("clevr", {"k": 6, "routing": "relu_l1"}, "clevr k=6 of 12"),
)
BATCHES = (64, 128, 256)


def _step_seconds(space_name: str, values: dict, batch_size: int, steps: int) -> tuple[float, int]:
    """Median seconds of one training step (after two warm-up steps) and the epoch's example count."""
    space = get_space(space_name)
    config = network_config(space, space.expand(values), "proxy")
    data = load_data(space.proxy.dataset, input_size=config.input_size)
    settings = default_settings(data.task, batch_size=batch_size)
    torch.manual_seed(0)
    model = build_task_model(model_spec(config, data, settings)).train()
    optimizer = make_optimizer(model, settings)
    batches = data.train.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(steps + 2):
        batch = next(batches)
        start = time.perf_counter()
        train_step(model, batch, data.task, optimizer, settings)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times), len(data.train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per case and batch size")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    rows = []
    for space_name, values, label in CASES:
        for batch in BATCHES:
            seconds, examples = _step_seconds(space_name, values, batch, args.steps)
            rows.append(
                {
                    "case": label,
                    "batch": batch,
                    "samples_per_s": batch / seconds,
                    "epoch_minutes": examples / batch * seconds / 60,
                }
            )
    result = {"threads": torch.get_num_threads(), "data": "easy-vqa train side (34,717 questions)", "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"training steps on easy-VQA, {result['threads']} threads (median step time)")
    for r in rows:
        print(
            f"  {r['case']:<26} batch {r['batch']:>3}: {r['samples_per_s']:6.0f} samples/s, "
            f"epoch {r['epoch_minutes']:.1f} min"
        )


if __name__ == "__main__":
    main()
