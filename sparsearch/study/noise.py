"""How far apart two accuracies must be to differ: standard errors, paired where possible.

Every configuration of a supernet study is scored on the same examples, so two scores compare example
by example: the difference of two accuracies is the mean of ``d_i = c_i - c'_i`` (each -1, 0 or 1) and
its standard error ``std(d) / √n`` is much smaller than that of two independent samples where the two
networks mostly agree. Each trial keeps which of its scoring examples it got right (``correct``, a hex
string of bits); where that is missing (a fine-tuned accuracy), the unpaired error √(se₁² + se₂²) of two
binomial proportions is used. A difference within ``Z`` standard errors (95%) is a tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Difference",
    "Measurement",
    "Z",
    "compare",
    "describe_comparison",
    "difference",
    "pack",
    "standard_error",
    "unpack",
]

Z = 1.959964  # two-sided 95% normal quantile


def pack(correct: Sequence[bool]) -> str:
    """Bits of ``correct`` as a hex string (example i is bit i; 1,000 examples take 250 characters)."""
    bits = np.packbits(np.asarray(correct, dtype=bool), bitorder="little")
    return bits.tobytes().hex()


def unpack(text: str, n: int) -> np.ndarray:
    """The first ``n`` bits of :func:`pack`'s string as a bool array."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8), bitorder="little")
    return bits[:n].astype(bool)


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` examples."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n > 0 else math.inf


@dataclass(frozen=True)
class Difference:
    value: float  # a - b
    error: float  # its standard error
    paired: bool

    @property
    def low(self) -> float:
        return self.value - Z * self.error

    @property
    def high(self) -> float:
        return self.value + Z * self.error

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes 0; otherwise the two are tied."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | bool]:
        return {"difference": self.value, "low": self.low, "high": self.high, "paired": self.paired}


def difference(a: dict, b: dict) -> Difference:
    """Accuracy of ``a`` minus that of ``b``, each ``{"accuracy", "examples", "correct"?}``.

    Paired when both carry ``correct`` over the same number of examples (the same scoring split)."""
    n_a, n_b = int(a.get("examples", 0)), int(b.get("examples", 0))
    if a.get("correct") and b.get("correct") and n_a == n_b:
        d = unpack(a["correct"], n_a).astype(float) - unpack(b["correct"], n_b).astype(float)
        error = float(d.std(ddof=1) / math.sqrt(n_a)) if n_a > 1 else math.inf
        return Difference(float(d.mean()), error, True)
    error = math.hypot(standard_error(a["accuracy"], n_a), standard_error(b["accuracy"], n_b))
    return Difference(a["accuracy"] - b["accuracy"], error, False)


@dataclass(frozen=True)
class Measurement:
    number: int  # the trial
    flops: int
    accuracy: dict  # {"accuracy", "examples", "correct"?}


def describe_comparison(entry: dict, prefix: str = "") -> str:
    """``3 more accurate beyond the noise, 5 tied (best: trial 17, +1.2 points [+0.3, +2.1])``."""
    beaten, tied, best = entry[f"{prefix}beaten_by"], entry.get(f"{prefix}tied_with"), entry.get(f"{prefix}best")
    if tied is None:  # a summary from before comparisons had intervals
        return f"{len(beaten)} more accurate (no interval recorded)"
    text = f"{len(beaten)} more accurate beyond the noise, {len(tied)} tied within it"
    if best is not None:
        text += (
            f" (best: trial {best['number']}, {100 * best['difference']:+.1f} points "
            f"[{100 * best['low']:+.1f}, {100 * best['high']:+.1f}], {'paired' if best['paired'] else 'unpaired'})"
        )
    return text


def compare(candidates: Sequence[Measurement], reference: Measurement) -> dict:
    """How the ``candidates`` at equal or lower FLOPs stand against ``reference``.

    ``beaten_by``: more accurate beyond the noise; ``tied_with``: within it (either side); ``best``: the
    most accurate of them, with the 95% interval of its difference.
    """
    beaten, tied, best = [], [], None
    for c in candidates:
        if c.flops > reference.flops or c.number == reference.number:
            continue
        d = difference(c.accuracy, reference.accuracy)
        if d.significant and d.value > 0:
            beaten.append(c.number)
        elif not d.significant:
            tied.append(c.number)
        if best is None or d.value > best[1].value:
            best = (c.number, d)
    return {
        "beaten_by": beaten,
        "tied_with": tied,
        "best": None if best is None else {"number": best[0], **best[1].to_dict()},
    }
