"""Data-parallel training under torchrun: 2 CPU processes (gloo) take the steps 1 process takes at the
same global batch. Real processes, started by torchrun itself.

What can be promised: the same step, to float32 rounding. Partial sums add in another order in 2 processes
(a gradient is summed over 24 + 24 examples instead of 48), and this family's hard decisions (top-k paths,
ReLU kinks, GateConnect's sampled inputs) make training amplify any rounding difference about tenfold per
step early on; changing only the thread count of one process does the same. So the equality is checked
within 1e-5 over two steps (across an epoch boundary, an evaluation and a GateConnect phase change), and
the longer run's difference is checked to be no larger than the one a thread count makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# A top-k stage (softmax gates, their CV² balance term), two learned GateConnect stages and batch norms
# throughout: every statistic of the batch is one the processes must share.
RUN = [
    "train",
    "--space",
    "gateconnect_digits",
    "--data",
    "digits",
    "--set",
    "stage1.k=3",
    "--set",
    "stage1.routing=softmax",
    "--set",
    "fan_in=2",
    "--batch-size",
    "48",
    "--device",
    "cpu",
    "--workers",
    "0",
]


def _train(out: Path, processes: int, *args: str, threads: int = 1) -> dict[str, torch.Tensor]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env["OMP_NUM_THREADS"] = str(threads)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "sparsearch",
        *RUN,
        *args,
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]  # one writer, no leftovers
    return load_file(out / "model.safetensors")


def _difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_two_torchrun_processes_take_the_steps_one_process_takes(tmp_path: Path) -> None:
    short = ["--epochs", "2", "--steps-per-epoch", "1"]
    one, two = _train(tmp_path / "one", 1, *short), _train(tmp_path / "two", 2, *short)
    assert _difference(one, two) <= 1e-5
    from sparsearch.spaces import get_space
    from sparsearch.train import default_settings
    from sparsearch.train.run import build_run

    space = get_space("gateconnect_digits")
    values = space.expand({"stage1.k": 3, "stage1.routing": "softmax", "fan_in": 2})
    initial = build_run(space, values, default_settings("classification"), data="digits")[2].state_dict()
    assert not torch.equal(one["stem.0.weight"], initial["stem.0.weight"])  # the steps did move the weights


@pytest.mark.slow
def test_a_longer_run_parts_no_more_than_a_thread_count_makes_it(tmp_path: Path) -> None:
    longer = ["--epochs", "1", "--steps-per-epoch", "6"]
    one = _train(tmp_path / "one", 1, *longer)
    two = _train(tmp_path / "two", 2, *longer)
    threads = _train(tmp_path / "threads", 1, *longer, threads=2)
    assert _difference(one, two) <= 2 * max(_difference(one, threads), 1e-6)


def test_a_worker_under_torchrun_with_several_processes_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparsearch"]
    done = subprocess.run(
        [*command, "worker", "--storage", f"sqlite:///{tmp_path}/s.db", "--study-name", "s"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "does not run under torchrun with several processes" in done.stderr
    assert not (tmp_path / "s.db").exists()
