"""Training settings, with the seeds' recipes as defaults.

- CNN classification: SGD with Nesterov momentum 0.9, weight decay 5e-4, cosine learning rate
  (seed 003, App. E uses SGD, momentum 0.9, weight decay 5e-4).
- VQA: Adamax at 2e-3 with gradient-norm clipping at 0.25 (seed 002).
- Batch 64 for both: on 2 CPU cores it gave the most samples/s of 64, 128 and 256 for every easy-VQA
  network measured (``benchmarks/bench_train.py``).
- The CV² balance term of the top-k gates (seed 000, App. C), weighted by ``balance_weight``.
- GateConnect (seed 003, App. E): phase 1 learns the gates with their own learning rate (2× the
  weights'), then the connectivity is frozen to the top-K gates and the weights are fine-tuned in three
  learning-rate steps (1×, 0.1×, 0.01×). The phases split the run's steps in App. E's proportions
  120 : 100 : 50 : 50, so even a one-epoch run goes through all four.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sparsearch.choices import OPTIMIZERS
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, shown

__all__ = ["OPTIMIZERS", "GatePhase", "TrainSettings", "default_settings"]

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class GatePhase:
    share: float  # fraction of the run's steps
    lr_scale: float  # multiplies the weights' learning rate
    learn_gates: bool  # phase 1: gates learn; later phases: connectivity frozen to the top-K gates


# Seed 003, App. E (CIFAR): 120 epochs joint at lr 0.1 / gates 0.2, then frozen: 100 at 0.1, 50 at 0.01, 50 at 0.001.
GATECONNECT_PHASES = (
    GatePhase(120 / 320, 1.0, True),
    GatePhase(100 / 320, 1.0, False),
    GatePhase(50 / 320, 0.1, False),
    GatePhase(50 / 320, 0.01, False),
)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # learning rate over the run (outside GateConnect phases)
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    balance_weight: float = 0.01  # weight of the CV² balance term of the top-k gates
    gate_lr_scale: float = 2.0  # GateConnect gates' learning rate / the weights' in phase 1
    gate_phases: tuple[GatePhase, ...] = GATECONNECT_PHASES
    steps_per_epoch: int | None = None  # cap on steps per epoch (quick runs and tests); None = the whole split
    eval_batch_size: int = 256
    seed: int = 0
    val_fraction: float = 0.1
    # The VQA model around the backbone (seed 002 uses 1024 / 300 / 0.5; smaller for CPU proxies).
    vqa_hidden: int = 256
    vqa_embed_dim: int = 128
    vqa_dropout: float = 0.2

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size", "vqa_hidden", "vqa_embed_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={shown(value)} must be a positive integer")
        check_int("epochs", self.epochs)
        for key in ("batch_size", "eval_batch_size", "vqa_hidden", "vqa_embed_dim"):
            check_int(key, getattr(self, key), 1, MAX["batch_size"])
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ConfigError(f"steps_per_epoch={shown(self.steps_per_epoch)} must be a positive integer")
        if self.steps_per_epoch is not None:
            check_int("steps_per_epoch", self.steps_per_epoch, 1, MAX["count"])
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        for key in ("lr", "momentum", "weight_decay", "grad_clip", "balance_weight", "gate_lr_scale"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
                raise ConfigError(f"{key}={value!r} must be a finite number >= 0")
        if self.lr == 0:
            raise ConfigError("lr=0 would not train; give a positive learning rate")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction!r} must be between 0 and 1")
        if not 0 <= self.vqa_dropout < 1:
            raise ConfigError(f"vqa_dropout={self.vqa_dropout!r} must be in [0, 1)")
        if not self.gate_phases or abs(sum(p.share for p in self.gate_phases) - 1) > 1e-6:
            raise ConfigError("gate_phases: the shares must add up to 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"training settings: unknown field {unknown[0]!r}")
        values = dict(data)
        if "gate_phases" in values:
            values["gate_phases"] = tuple(GatePhase(**p) for p in values["gate_phases"])
        return cls(**values)


def default_settings(task: str, **overrides: Any) -> TrainSettings:
    """The seed recipe for ``task`` ("classification" or "vqa"), with ``overrides`` (None = keep)."""
    base = TrainSettings()
    if task == "vqa":  # seed 002: Adamax, gradient clipping, no weight decay, a constant rate
        base = replace(base, optimizer="adamax", lr=2e-3, weight_decay=0.0, grad_clip=0.25, schedule="constant")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
