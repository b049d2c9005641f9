"""Latency, measured one way for the whole tool: warm-up, ``torch.utils.benchmark`` blocked autorange,
median and interquartile range, the thread count stated; a comparison runs its two sides interleaved in
one process and is reported as a ratio (both see the same machine load).

Every figure of sparsearch's latency — the study's proxy and target columns, ``eval``, ``prune``'s
before/after table, the latency table, the benchmarks — comes from :func:`measure` or :func:`compare`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Comparison", "Latency", "compare", "forward", "measure"]

WARMUP = 2  # calls before timing (allocations, lazy initialisation)


@dataclass(frozen=True)
class Latency:
    """One measurement: seconds per call."""

    median: float
    iqr: float  # interquartile range of the per-block times
    runs: int  # calls timed
    threads: int

    @property
    def ms(self) -> float:
        return self.median * 1e3

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "iqr_ms": self.iqr * 1e3, "runs": self.runs, "threads": self.threads}


@dataclass(frozen=True)
class Comparison:
    """Two calls measured interleaved: ``ratio`` = reference / candidate time (a speed-up above 1)."""

    reference: Latency
    candidate: Latency

    @property
    def ratio(self) -> float:
        return self.reference.median / self.candidate.median

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference.to_dict(), "candidate": self.candidate.to_dict(), "ratio": self.ratio}


def _timer(fn: Callable[[], Any], threads: int):
    from torch.utils.benchmark import Timer

    return Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)


def _synchronised(fn: Callable[[], Any], cuda: bool) -> Callable[[], Any]:
    if not cuda:
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def _summary(times: list[float], threads: int) -> Latency:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Latency(statistics.median(times), q[2] - q[0], len(times), threads)


def measure(
    fn: Callable[[], Any], *, threads: int | None = None, min_run_time: float = 0.2, cuda: bool = False
) -> Latency:
    """Time ``fn()``: ``WARMUP`` calls, then blocked autorange for at least ``min_run_time`` seconds."""
    threads = threads or torch.get_num_threads()
    fn = _synchronised(fn, cuda)
    for _ in range(WARMUP):
        fn()
    m = _timer(fn, threads).blocked_autorange(min_run_time=min_run_time)
    return _summary(list(m.times), threads)


def compare(
    reference: Callable[[], Any],
    candidate: Callable[[], Any],
    *,
    rounds: int = 3,
    threads: int | None = None,
    min_run_time: float = 0.1,
    cuda: bool = False,
) -> Comparison:
    """Time ``reference`` and ``candidate`` in ``rounds`` alternating blocks of blocked autorange, in this
    process; each side's summary pools its blocks' times."""
    threads = threads or torch.get_num_threads()
    sides = [_synchronised(reference, cuda), _synchronised(candidate, cuda)]
    for fn in sides:
        for _ in range(WARMUP):
            fn()
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for i, fn in enumerate(sides):
            times[i].extend(_timer(fn, threads).blocked_autorange(min_run_time=min_run_time).times)
    return Comparison(_summary(times[0], threads), _summary(times[1], threads))


def forward(model: nn.Module, batch) -> Callable[[], Any]:
    """A call of ``model`` in eval mode under ``torch.inference_mode`` on ``batch`` (a data Batch or a tensor)."""
    from sparsearch.train.loop import forward_batch

    model.eval()

    def run() -> Any:
        with torch.inference_mode():
            return model(batch) if isinstance(batch, torch.Tensor) else forward_batch(model, batch)

    return run
