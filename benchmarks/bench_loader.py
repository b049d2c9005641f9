"""Streaming data from disk against the in-memory path, side by side in one process.

- Training throughput (images/s) of the default proxy network on an image folder of 64×64 PNGs (the
  default proxy's input size), read by the folder reader with ``--workers`` DataLoader workers, against
  the same images decoded once into an in-memory split; and the loaders alone, without training.
- Peak memory of a pass over the folder at 1× and 10× the images, each in a fresh process: the main
  process's peak RSS, and a worker's largest private memory (a forked worker's RSS also counts every
  page it shares with the main process, so it reads as large as the main process's heap was at the fork),
  to show neither grows with the data set.

Throughputs are medians of ``--rounds`` rounds, each timing the folder and then memory (the ratio is the
median of the rounds' ratios).

Usage: python benchmarks/bench_loader.py [--json] [--images N] [--steps S] [--rounds R] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparsearch.data import Reading, Split, load_data
from sparsearch.spaces import get_space
from sparsearch.train import build_task_model, default_settings, describe_machine
from sparsearch.train.loop import make_optimizer, train_step
from sparsearch.train.run import model_spec, network_config

SIZE = 64
CLASSES = 10
BATCH = 64


def make_folder(root: Path, images: int) -> Path:
    """``images`` random-textured 64×64 PNGs in 10 class directories."""
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def in_memory(split) -> Split:
    """The same examples decoded once into one uint8 tensor (the in-memory path)."""
    batches = list(split.batches(256))
    images = torch.cat([((b.images * 0.25 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8) for b in batches])
    return Split(images, torch.cat([b.labels for b in batches]))


def throughput(split, steps: int, workers: int, train: bool) -> float:
    """Images/s over ``steps`` batches after two warm-up batches, training the default proxy or not."""
    space = get_space("default")
    config = network_config(space, space.expand({}), "proxy")
    data = load_data("digits", input_size=8)  # only for the model's shape: 10 classes, as the folder
    settings = default_settings("classification", batch_size=BATCH)
    torch.manual_seed(0)
    model = build_task_model(model_spec(config, _Like(data), settings)).train()
    optimizer = make_optimizer(model, settings)
    g = torch.Generator().manual_seed(0)
    batches = split.batches(BATCH, shuffle=True, generator=g, reading=Reading(workers=workers))
    seen, start = 0, None
    for i, batch in enumerate(batches):
        if i == 2:
            seen, start = 0, time.perf_counter()
        if train:
            train_step(model, batch, "classification", optimizer, settings)
        seen += len(batch)
        if i >= steps + 1:
            break
    return seen / (time.perf_counter() - start)


class _Like:
    """The data description a model is fitted to: 3 channels, 10 classes."""

    def __init__(self, data) -> None:
        self.task, self.classes, self.in_channels, self.vocab = "classification", data.classes, 3, None


PASS = """
import os, resource, sys, tempfile, torch
import sparsearch.data.image_folder as reader
from sparsearch.data import load_data, Reading

root, size, batch, workers, notes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
EARLY = int(sys.argv[6])
read = reader.ImageFiles.__getitem__

def private_kib():  # pages of this process alone (a forked worker's RSS also counts the pages it shares)
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty")))

def measured(self, key):  # every 100 items, a worker notes its items so far and its private memory
    self.items = getattr(self, "items", 0) + 1
    if self.items % 100 == 0:
        with open(os.path.join(notes, str(os.getpid())), "a") as f:
            f.write(f"{self.items} {private_kib()}\\n")
    return read(self, key)

reader.ImageFiles.__getitem__ = measured
d = load_data("folder:" + root, input_size=size, seed=0)
g = torch.Generator()
n = sum(len(b) for b in d.train.batches(batch, shuffle=True, generator=g, reading=Reading(workers=workers)))
samples = [tuple(map(int, line.split())) for p in os.listdir(notes) for line in open(os.path.join(notes, p))]
early = max(kib for items, kib in samples if items <= EARLY)  # the same work done at any data-set size
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, early, max(kib for _, kib in samples))
"""


def peak_rss(root: Path, workers: int, early: int) -> dict[str, float]:
    """One pass over the folder in a fresh process: the main process's peak RSS; a worker's largest private
    memory (pages not shared with the main process) over its first ``early`` items, the same work at
    every data-set size, and over the whole pass (which grows with the items a worker has read, as its
    allocator settles, about 40-70 MiB here whatever the data's size); in MiB."""
    with tempfile.TemporaryDirectory() as notes:
        args = [str(root), str(SIZE), str(BATCH), str(max(workers, 1)), notes, str(early)]
        done = subprocess.run([sys.executable, "-c", PASS, *args], capture_output=True, text=True, check=True)
    examples, main_kib, early_kib, worker_kib = (int(x) for x in done.stdout.split())
    return {
        "examples": examples,
        "main_mib": main_kib / 1024,
        "worker_private_mib": early_kib / 1024,
        "worker_private_whole_pass_mib": worker_kib / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--images", type=int, default=2000, help="images at 1x (10x is ten times as many)")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing the folder then memory")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the folder reader")
    args = parser.parse_args()
    if args.images < 10 * CLASSES or args.steps < 1 or args.workers < 0 or args.rounds < 1:
        parser.error("--images must be >= 100, --steps and --rounds >= 1, --workers >= 0")
    result: dict = {"machine": describe_machine(), "workers": args.workers, "batch": BATCH, "input_size": SIZE}
    result.update(images=args.images, steps=args.steps, rounds=args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        small = make_folder(Path(tmp) / "x1", args.images)
        folder = load_data(f"folder:{small}", input_size=SIZE, seed=0).train
        memory = in_memory(folder)
        for train in (True, False):
            key = "training" if train else "loading"
            rounds = [  # alternated, so that a slow spell of the machine falls on both
                (throughput(folder, args.steps, args.workers, train), throughput(memory, args.steps, 0, train))
                for _ in range(args.rounds)
            ]
            disk, ram = (statistics.median(r[i] for r in rounds) for i in (0, 1))
            ratio = statistics.median(d / m for d, m in rounds)
            result[key] = {"folder_images_per_s": disk, "in_memory_images_per_s": ram, "ratio": ratio}
        large = make_folder(Path(tmp) / "x10", 10 * args.images)
        early = max(100, (args.images * 9 // 10) // max(args.workers, 1) // 100 * 100)  # a worker's share at 1x
        rss = {"1x": peak_rss(small, args.workers, early), "10x": peak_rss(large, args.workers, early)}
        rss["worker_items_compared"] = early
        rss["main_ratio_10x_to_1x"] = rss["10x"]["main_mib"] / rss["1x"]["main_mib"]
        rss["worker_ratio_10x_to_1x"] = rss["10x"]["worker_private_mib"] / rss["1x"]["worker_private_mib"]
        result["peak_rss"] = rss
    if args.json:
        print(json.dumps(result, indent=1))
        return
    m = result["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {args.workers} workers, batch {BATCH}, {SIZE}x{SIZE}")
    for key in ("training", "loading"):
        r = result[key]
        print(
            f"{key}: folder {r['folder_images_per_s']:.0f} images/s, in memory {r['in_memory_images_per_s']:.0f}"
            f" images/s, ratio {r['ratio']:.2f}"
        )
    for size in ("1x", "10x"):
        r = rss[size]
        print(
            f"peak RSS at {size} ({r['examples']} images): main {r['main_mib']:.0f} MiB, "
            f"worker {r['worker_private_mib']:.0f} MiB private over its first {early} items "
            f"({r['worker_private_whole_pass_mib']:.0f} MiB over the pass)"
        )
    print(f"10x / 1x: main {rss['main_ratio_10x_to_1x']:.2f}, worker {rss['worker_ratio_10x_to_1x']:.2f}")


if __name__ == "__main__":
    main()
