"""Compute budgets: ``50GFLOPs``, ``50 GFLOPs``, ``32GMACs``, ``300MFLOPs``, ``500kFLOPs``, ``5e10`` (FLOPs).

The grammar: a positive number, then optionally an SI prefix (``k``/``K`` 10³, ``M`` 10⁶, ``G`` 10⁹,
``T`` 10¹²) and a unit, ``FLOPs`` or ``MACs`` (one MAC = 2 FLOPs), in any letter case (``50gflops``,
``50GFLOPS``). A bare number is FLOPs; a prefix without a unit (``50G``) is refused with a hint. Latency
budgets (``150ms``, ``0.2s``) are :func:`parse_latency_budget`'s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from sparsearch.errors import ConfigError

__all__ = ["Budget", "budget_text", "format_flops", "latency_budget_text", "parse_budget", "parse_latency_budget"]

MAX_BUDGET_FLOPS = 10**18  # FLOPs per example: a million TFLOPs, far past any network's
_PREFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = r"([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_BUDGET = re.compile(rf"^\s*{_NUMBER}\s*(?:([kmgt]?)(flops|macs))?\s*$", re.IGNORECASE)
_NO_UNIT = re.compile(rf"^\s*{_NUMBER}\s*([kmgt])\s*$", re.IGNORECASE)
_FORMS = "write e.g. 50GFLOPs, 50 GFLOPs, 32GMACs, 300MFLOPs, 500kFLOPs or 5e10 (FLOPs), or 150ms"


def parse_budget(text: str) -> int:
    """FLOPs in a budget string; MACs count twice (FLOPs = 2 × MACs).

    Raises:
        ConfigError: for anything but a positive finite amount in the accepted forms.
    """
    match = _BUDGET.match(text or "")
    if match is None:
        bare = _NO_UNIT.match(text or "")
        if bare is not None:
            number, prefix = bare.group(1), bare.group(2).upper()
            raise ConfigError(f"budget {text!r}: add a unit, e.g. {number}{prefix}FLOPs or {number}{prefix}MACs")
        raise ConfigError(f"budget {text!r} not understood; {_FORMS}")
    number, prefix, unit = match.groups()
    amount = Decimal(number)  # exact: the budget a study carries reads back from its text (budget_text)
    if amount.adjusted() <= 30:  # a larger exponent is past the cap whatever the prefix
        amount = amount * _PREFIX[(prefix or "").upper()] * (2 if (unit or "").lower() == "macs" else 1)
    if not 1 <= amount <= MAX_BUDGET_FLOPS:
        raise ConfigError(
            f"budget {text!r} must be a positive, finite amount of at least 1 FLOP and at most "
            f"{MAX_BUDGET_FLOPS:.0e} FLOPs; {_FORMS}"
        )
    return int(amount.to_integral_value(rounding=ROUND_HALF_EVEN))


def format_flops(flops: float, unit: str = "FLOPs") -> str:
    """``63.9 GFLOPs``; ``unit="MACs"`` divides by two first."""
    value = flops / 2 if unit == "MACs" else flops
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def budget_text(flops: int) -> str:
    """The budget exactly, as ``--budget`` reads it back: ``50GFLOPs``, ``12.34GFLOPs``, ``999FLOPs``.

    A study carries its budget as an int; this is the text its name and its reproduce command use, so
    that ``parse_budget(budget_text(n)) == n`` (display strings like :func:`format_flops` round)."""
    for prefix, scale in (("T", 12), ("G", 9), ("M", 6), ("K", 3)):
        if flops >= 10**scale:
            number = Decimal(flops).scaleb(-scale).normalize()
            return f"{number:f}{prefix}FLOPs"
    return f"{flops}FLOPs"


_LATENCY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s)\s*$")


def parse_latency_budget(text: str) -> float | None:
    """Milliseconds in a latency budget (``150ms``, ``0.2s``), or None when ``text`` is not one."""
    match = _LATENCY.match(text or "")
    if match is None:
        return None
    value = float(match.group(1)) * (1000.0 if match.group(2) == "s" else 1.0)
    if not math.isfinite(value) or not 0 < value <= 3.6e6:
        raise ConfigError(f"budget {text!r}: a latency budget must be more than 0 and at most an hour")
    return value


def latency_budget_text(ms: float) -> str:
    """The latency budget as ``--budget`` reads it back: ``150ms``, ``12.5ms``."""
    return f"{Decimal(repr(ms)).normalize():f}ms"


@dataclass(frozen=True)
class Budget:
    """A study's budget: an amount and its unit, parsed once from ``--budget`` and carried as is.

    ``unit`` is ``"FLOPs"`` (target executed FLOPs per example, an int; MACs are parsed as 2 FLOPs) or
    ``"ms"`` (the target's predicted milliseconds at batch 1). It parses (:meth:`parse`), compares
    (:meth:`admits`, :meth:`violation`), prints (:attr:`display`) and names (:attr:`text`, exact).
    """

    amount: float  # FLOPs (an int) or milliseconds
    unit: str  # "FLOPs" or "ms"

    def __post_init__(self) -> None:
        if self.unit not in ("FLOPs", "ms"):
            raise ConfigError(f"budget unit {self.unit!r}; allowed: FLOPs, ms")
        amount = self.amount
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount <= 0:
            raise ConfigError(f"budget={amount!r} {self.unit} must be a positive number")
        if self.unit == "FLOPs" and (not isinstance(amount, int) or amount < 1):
            raise ConfigError(f"budget={amount!r} must be a positive number of FLOPs")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``50GFLOPs``, ``25GMACs``, ``5e10`` (FLOPs) or ``150ms``, ``0.2s`` (predicted latency)."""
        ms = parse_latency_budget(text)
        return cls(ms, "ms") if ms is not None else cls(parse_budget(text), "FLOPs")

    @classmethod
    def flops(cls, amount: int) -> Budget:
        return cls(amount, "FLOPs")

    @property
    def text(self) -> str:
        """Exactly, as ``--budget`` reads it back (``50GFLOPs``, ``12.34GFLOPs``, ``150ms``)."""
        return budget_text(int(self.amount)) if self.unit == "FLOPs" else latency_budget_text(self.amount)

    @property
    def display(self) -> str:
        """As people read it (``50 GFLOPs``; ``150ms predicted target latency (batch 1)``)."""
        if self.unit == "ms":
            return f"{self.text} predicted target latency (batch 1)"
        return format_flops(self.amount)

    def admits(self, cost: float) -> bool:
        """True when ``cost`` (in this unit) is within the budget."""
        return cost <= self.amount

    def violation(self, cost: float) -> float:
        """How far ``cost`` is over the budget, as a fraction of it (<= 0: within)."""
        return (cost - self.amount) / self.amount
