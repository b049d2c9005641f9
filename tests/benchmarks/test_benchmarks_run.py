"""The benchmarks run and print the JSON keys the docs rely on (slow: `make test-slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--json", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.slow
def test_bench_layers_json() -> None:
    result = _run("bench_layers.py", "--repeats", "1")
    assert {(r["batch"], r["k"]) for r in result["topk"]} == {(b, k) for b in (1, 32) for k in (32, 16, 8, 4)}
    assert all({"batch", "k", "C", "speedup", "ideal"} <= set(r) for r in result["topk"])
    assert all({"batch", "kernel_size", "experts", "speedup", "form"} <= set(r) for r in result["condconv"])


@pytest.mark.slow
def test_bench_cost_json() -> None:
    result = _run("bench_cost.py", "--repeats", "1")
    assert result["executed_flops"] == 33_784_451_072
    assert result["analytic_ms"] < result["flop_counter_ms"]


@pytest.mark.slow
def test_bench_train_json() -> None:
    result = _run("bench_train.py", "--steps", "1")
    assert len(result["rows"]) == 9
    assert all(r["samples_per_s"] > 0 and r["epoch_minutes"] > 0 for r in result["rows"])


@pytest.mark.slow
def test_bench_compact_json() -> None:
    result = _run("bench_compact.py", "--steps", "3", "--repeats", "1")
    assert result["params_after"] <= result["params_before"]
    assert result["equivalence_max_abs_diff"] <= 1e-4
    assert {r["batch"] for r in result["latency"]} == {1, 32}
    assert all({"latency_reduction", "target_reduction", "met"} <= set(r) for r in result["latency"])


def test_bench_e2e_json() -> None:
    result = _run("bench_e2e.py", "--batches", "1", "--rounds", "1", "--input-size", "64")
    assert [r["k"] for r in result["rows"]] == ["C/2", "C/4", "C/8"]
    assert all(r["speedup"] > 0 and r["flops_ratio"] > 1 for r in result["rows"])
    assert all(0 < r["floor_ms"] < r["dense_ms"] and r["eager_sparse_ms"] > 0 for r in result["rows"])
    assert result["machine"]["cpu"] and set(result["met"]) == {"C/8 batch 1", "C/4 batch 1"}


@pytest.mark.slow
def test_bench_loader_json() -> None:
    result = _run("bench_loader.py", "--images", "200", "--steps", "2", "--rounds", "1")
    assert {"folder_images_per_s", "in_memory_images_per_s", "ratio"} <= set(result["training"])
    assert result["peak_rss"]["10x"]["examples"] == 10 * result["peak_rss"]["1x"]["examples"]
    assert {"main_ratio_10x_to_1x", "worker_ratio_10x_to_1x"} <= set(result["peak_rss"])


@pytest.mark.slow
def test_bench_gpu_runs_on_the_cpu_when_asked_and_refuses_without_cuda() -> None:
    """The GPU script's figures need CUDA; on the CPU it checks itself (gather and grouped agree)."""
    result = _run("bench_gpu.py", "--device", "cpu", "--dtypes", "float32", "--batches", "1", "3", "--rounds", "1",
                  "--input-size", "64")  # fmt: skip
    assert {(r["k"], r["batch"]) for r in result["rows"]} == {("C/4", 1), ("C/4", 3), ("C/8", 1), ("C/8", 3)}
    assert all(r["diff"] <= 1e-3 and r["grouped_ms"] > 0 and r["gather_ms"] > 0 for r in result["rows"])
    if not torch.cuda.is_available():
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no CUDA" in done.stderr
