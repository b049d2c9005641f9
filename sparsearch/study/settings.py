"""What a study is: its space, budget, evaluation mode and their settings, stored with the study.

The settings travel in the study's user attributes (``sparsearch``), with the space's YAML text, so a
``sparsearch worker`` on another machine evaluates exactly what the study that created them asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sparsearch.choices import EVAL_MODES, OBJECTIVES, PRECISIONS, SAMPLING_RULES
from sparsearch.cost.budget import Budget
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, shown
from sparsearch.study.samplers import SAMPLERS

__all__ = ["EVAL_MODES", "SAMPLERS", "StudySettings", "default_study_name", "make_settings", "option_flags"]


def _option(default: Any, flag: str) -> Any:
    """A setting that the ``sparsearch study`` option ``flag`` sets (the reproduce command writes it)."""
    return field(default=default, metadata={"flag": flag})


@dataclass(frozen=True)
class StudySettings:
    space: str  # the space's name
    space_text: str  # its YAML, so that workers elsewhere parse the same space
    space_source: str  # where it came from (messages only)
    budget: Budget  # target FLOPs per example a configuration may execute, or its predicted ms (batch 1)
    eval: str = _option("supernet", "--eval")
    trials: int | None = None  # None: the evaluator's default_trials
    # proxy training epochs (train mode; supernet training); None: the space's
    epochs: int | None = _option(None, "--epochs")
    data: str | None = _option(None, "--data")  # None: the space's proxy dataset
    lr: float | None = _option(None, "--lr")  # proxy training learning rate; None: the task's recipe
    sampler: str = _option("tpe", "--sampler")
    seed: int = _option(0, "--seed")
    # structures trained as supernets (the reference structure first); each costs a training
    supernets: int = _option(1, "--supernets")
    # supernet steps: "sandwich" (largest, smallest, random) or "uniform"
    sampling: str = _option("sandwich", "--sampling")
    # sandwich: random configurations per step besides the largest and smallest
    sandwich_random: int = _option(1, "--sandwich-random")
    # supernet training arithmetic: "32", or autocast to "bf16" / "fp16" (scoring stays in float32)
    supernet_precision: str = _option("32", "--supernet-precision")
    distill: bool = True  # sandwich: in-place distillation from the largest configuration
    # validation examples each configuration is scored on (0: all)
    score_examples: int = _option(1000, "--score-examples")
    recalibrate_batches: int = 4  # batch-norm statistics re-estimated per configuration (supernet)
    # supernet mode: steps of fine-tuning of each Pareto configuration
    finetune_steps: int = _option(60, "--finetune-steps")
    finetune_top: int = _option(4, "--finetune-top")  # ... at most this many Pareto configurations
    stop_margin: float = 0.02  # train mode: early stop when this far behind ...
    stop_peers: int = 3  # ... this many completed trials of no more FLOPs at the same point
    latency_batch: int = 32
    target_latency_batches: tuple[int, ...] = (1,)  # the target is timed at these batch sizes
    dense_flops: int | None = None  # a latency budget: the target's dense FLOPs (the FLOPs axis's reference)
    # the second objective: "flops" (target FLOPs) or "latency" (predicted target ms)
    objective: str = _option("flops", "--objective")
    latency_table: dict[str, Any] | None = None  # ... predicted with this table (sparsearch latency-table)

    def __post_init__(self) -> None:
        if self.eval not in EVAL_MODES:
            raise ConfigError(f"eval={self.eval!r}; allowed: {', '.join(EVAL_MODES)}")
        if self.sampling not in SAMPLING_RULES:
            raise ConfigError(f"sampling={self.sampling!r}; allowed: {', '.join(SAMPLING_RULES)}")
        if self.supernet_precision not in PRECISIONS:
            raise ConfigError(f"supernet precision={shown(self.supernet_precision)}; allowed: {', '.join(PRECISIONS)}")
        if not isinstance(self.distill, bool):
            raise ConfigError(f"distill={self.distill!r} must be true or false")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler={self.sampler!r}; allowed: {', '.join(SAMPLERS)}")
        for key in ("trials", "epochs"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{key}={shown(value)} must be a positive integer")
            if value is not None:
                check_int(key, value)
        for key, high in (("supernets", 64), ("stop_peers", 10_000), ("latency_batch", MAX["batch_size"])):
            check_int(key, getattr(self, key), 1, high)
        for key, high in (("finetune_top", 1_000), ("recalibrate_batches", 10_000)):
            check_int(key, getattr(self, key), 1, high)
        for key, high in (("score_examples", MAX["count"]), ("finetune_steps", MAX["count"]), ("sandwich_random", 64)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key}={shown(value)} must be an integer >= 0")
            check_int(key, value, 0, high)
        if self.lr is not None and (
            isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0
        ):
            raise ConfigError(f"lr={self.lr!r} must be a positive number")
        batches = self.target_latency_batches
        if not isinstance(batches, list | tuple) or not 1 <= len(batches) <= 8:
            raise ConfigError(f"target latency batches={shown(batches)}: one to eight batch sizes")
        for b in batches:
            check_int("target latency batch", b, 1, MAX["batch_size"])
        object.__setattr__(self, "target_latency_batches", tuple(batches))
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective={shown(self.objective)}; allowed: {', '.join(OBJECTIVES)}")
        if not isinstance(self.budget, Budget):
            raise ConfigError(f"budget={shown(self.budget)}: expected a Budget (Budget.parse('50GFLOPs'))")
        if self.objective == "latency" and self.budget.unit != "ms":
            raise ConfigError("the latency objective needs a latency budget, e.g. --budget 150ms")
        if self.budget.unit == "ms":
            if not isinstance(self.latency_table, dict):
                raise ConfigError("a latency budget needs the latency table its predictions come from")
            check_int("dense_flops", self.dense_flops, 1)

    @property
    def flops_reference(self) -> int:
        """The FLOPs axis's reference: the budget, or under a latency budget the target's dense FLOPs."""
        return int(self.budget.amount) if self.budget.unit == "FLOPs" else int(self.dense_flops or 0)

    @property
    def cost_budget(self) -> float:
        """The budget in the unit of the second objective (FLOPs, or predicted ms): the hypervolume's reference."""
        return float(self.budget.amount) if self.objective == "latency" else self.flops_reference

    @property
    def cost_name(self) -> str:
        """What the second objective is, in words."""
        return "predicted latency" if self.objective == "latency" else "FLOPs"

    @property
    def n_trials(self) -> int:
        from sparsearch.study.evaluators import evaluator_class

        return self.trials if self.trials is not None else evaluator_class(self.eval).default_trials

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the budget as its exact text (``50GFLOPs``, ``150ms``)."""
        return {**asdict(self), "budget": self.budget.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """The settings :meth:`to_dict` wrote (or a study made before the budget was one value, which kept
        ``budget_flops`` and ``budget_ms``)."""
        data = dict(data)
        if "budget" not in data:
            flops, ms = data.pop("budget_flops", None), data.pop("budget_ms", None)
            data["budget"] = Budget(ms, "ms") if ms is not None else Budget.flops(flops)
            if ms is not None:
                data["dense_flops"] = flops
        elif isinstance(data["budget"], str):
            data["budget"] = Budget.parse(data["budget"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_run_options(self, **options: Any) -> StudySettings:
        """A copy with the options that may change between runs of one study (None = keep)."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})


def option_flags() -> dict[str, str]:
    """Each setting a ``sparsearch study`` option sets, with its flag (declared once, on the field): what a
    report's reproduce command writes for a setting that differs from its default."""
    return {f.name: f.metadata["flag"] for f in fields(StudySettings) if "flag" in f.metadata}


def default_study_name(space: str, budget: Budget) -> str:
    """``default-50GFLOPs``: the space and the exact budget (``default-12.34GFLOPs``, ``default-150ms``),
    safe as a file name."""
    name = f"{space}-{budget.text}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def make_settings(
    space: str | Path = "default",
    budget: str | Budget = "50GFLOPs",
    *,
    latency_table: str | Path | None = None,
    **options: Any,
) -> StudySettings:
    """The settings ``sparsearch study --budget BUDGET --space SPACE ...`` makes, from the same words.

    ``space``: a shipped space's name or a path to a space file (read once; its YAML travels with the
    study). ``budget``: as on the command line (``"50GFLOPs"``, ``"25GMACs"``, ``"150ms"``); a latency
    budget predicts with ``latency_table`` (default: this space's table from ``sparsearch latency-table``).
    ``options``: any other :class:`StudySettings` field by name (``trials=20``, ``sampler="nsga2"``,
    ``eval="train"``, ``objective="latency"`` ...), checked as the command checks them.
    """
    from sparsearch.cost import count
    from sparsearch.spaces.registry import get_space_and_text

    fixed = {"space", "space_text", "space_source", "budget", "dense_flops"}
    if fixed & set(options):
        raise ConfigError(f"make_settings takes {', '.join(sorted(fixed & set(options)))} from space and budget")
    chosen, text = get_space_and_text(str(space))
    parsed = budget if isinstance(budget, Budget) else Budget.parse(budget)
    dense, table = None, None
    if parsed.unit == "ms":  # feasibility by the predicted latency; FLOPs stay the objective, up to dense
        from sparsearch.study.latency_table import table_for_study

        dense, table = count(chosen.target_config()).dense_flops, table_for_study(chosen, latency_table)
    if "target_latency_batches" in options:
        options["target_latency_batches"] = tuple(options["target_latency_batches"])
    try:
        return StudySettings(
            space=chosen.name,
            space_text=text,
            space_source=chosen.source,
            budget=parsed,
            dense_flops=dense,
            latency_table=table,
            **options,
        )
    except TypeError as err:  # an option that is not a field
        raise ConfigError(f"make_settings: {err}") from None
