"""Weight-sharing supernets: one network per structure, trained once while k and K are sampled per step.

A supernet is the space's proxy network at the structure's routing and experts, built with k = C (and
K = C). Structural knobs the space shares (``shared: true``) are sampled per step like k: the network is
built with the most experts and the first routing choice, and ``set_knobs`` switches both in place.
Each training step runs configurations drawn by the sampling rule (:class:`Sampling`):

- ``sandwich`` (the default; Yu et al. 2020, BigNAS): the largest configuration (every elastic knob at
  its maximum), the smallest (every one at its minimum) and ``random`` configurations drawn uniformly,
  their gradients summed into one optimiser step. With ``distill``, the largest learns from the labels
  and the others from its predictions (in-place distillation), so the small configurations, which a
  uniform draw rarely visits, are trained every step and toward one consistent teacher;
- ``uniform``: one configuration per step, each elastic parameter (``conv3.k``, ``stage2.fan_in``)
  drawn independently from its allowed values.

GateConnect gates keep learning throughout (no freeze), since the fan-in they are ranked for changes per step.

Training, scoring and fine-tuning run the top-k blocks in masked execution: the same outputs and
gradients as sparse execution (the layers' tests prove it), and faster on a CPU for the proxy's narrow
paths (203 vs 282 ms per step on the default proxy, 2 cores). Latency is measured in sparse execution.

A configuration is scored by setting its k and K on the shared weights, re-estimating the batch-norm
statistics on a few training batches (the statistics of a sum of k paths depend on k), and evaluating
on a fixed part of the validation split, the same examples for every configuration (so two scores
compare paired, example by example). The Pareto configurations are then fine-tuned briefly from
the shared weights and evaluated on the whole validation split.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsearch.choices import SAMPLING_RULES
from sparsearch.data import Datasets, Split
from sparsearch.errors import ConfigError
from sparsearch.layers import GateConnectModule, TopKBottleneck
from sparsearch.models import find_network
from sparsearch.spaces import Space
from sparsearch.study.structure import Structure, elastic_parameters, supernet_values
from sparsearch.train.checkpoint import is_checkpoint, load_checkpoint, save_checkpoint
from sparsearch.train.loop import (
    EvalResult,
    TrainingError,
    balance_term,
    distillation_loss,
    evaluate,
    finish_step,
    fit,
    forward_batch,
    task_loss,
    train_step,
)
from sparsearch.train.resume import Saving, saved_by
from sparsearch.train.run import build_run
from sparsearch.train.runtime import Runtime, StepScale
from sparsearch.train.settings import GatePhase, TrainSettings

__all__ = ["Sampling", "Supernet", "configure", "recalibrate_batch_norm", "score_split"]


@dataclass(frozen=True)
class Sampling:
    """Which configurations a supernet's training step runs."""

    rule: str = "sandwich"  # "sandwich": largest, smallest and `random` random ones; "uniform": one random
    random: int = 1  # sandwich: random configurations per step besides the largest and the smallest
    distill: bool = True  # sandwich: the others learn from the largest's predictions

    def __post_init__(self) -> None:
        if self.rule not in SAMPLING_RULES:
            raise ConfigError(f"sampling rule {self.rule!r}; allowed: {', '.join(SAMPLING_RULES)}")
        if not isinstance(self.random, int) or isinstance(self.random, bool) or self.random < 0:
            raise ConfigError(f"sandwich random={self.random!r} must be an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "random": self.random, "distill": self.distill}


LEARN_GATES_THROUGHOUT = (GatePhase(1.0, 1.0, True),)


def configure(model: nn.Module, space: Space, values: dict[str, Any]) -> None:
    """Set the k and fan-in of ``values`` on the blocks of ``model`` (the proxy network of ``space``)."""
    find_network(model).set_knobs(space.proxy_config(values))


def set_execution(model: nn.Module, execution: str) -> None:
    for module in model.modules():
        if isinstance(module, TopKBottleneck):
            module.execution = execution


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, split: Split, batches: int, batch_size: int, device: torch.device):
    """Re-estimate every batch norm's running statistics as the average over ``batches`` batches, with
    the rest of the model in eval mode (gates rank as at inference).

    Top-k blocks run in masked execution meanwhile: in eval, sparse execution folds its expand batch
    norm into the gathered weights and would leave that norm's statistics at their reset values."""
    model.eval()
    blocks = [m for m in model.modules() if isinstance(m, TopKBottleneck)]
    executions = [b.execution for b in blocks]
    set_execution(model, "masked")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
        m.train()
    generator = torch.Generator().manual_seed(0)  # the same batches for every configuration
    for i, batch in enumerate(split.batches(batch_size, shuffle=True, generator=generator)):
        if i >= batches:
            break
        forward_batch(model, batch.to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    for block, execution in zip(blocks, executions, strict=True):
        block.execution = execution
    model.eval()


def score_split(data: Datasets, examples: int) -> Split:
    """The first ``examples`` of the validation split (0 or more than there are: all of it)."""
    if examples <= 0 or examples >= len(data.val):
        return data.val
    return data.val.subset(torch.arange(examples))


def _precision_record(precision: str) -> dict[str, str]:
    """What a supernet's records say of its arithmetic: nothing for float32 (as every supernet trained
    before the choice existed), else ``{"precision": ...}``."""
    return {} if precision == "32" else {"precision": precision}


@dataclass
class Supernet:
    space: Space
    structure: Structure
    model: nn.Module
    spec: Any  # ModelSpec
    data: Datasets
    settings: TrainSettings
    train_seconds: float
    sampling: Sampling = Sampling()
    precision: str = "32"  # the training's arithmetic (Runtime.precision)

    @classmethod
    def train(
        cls,
        space: Space,
        structure: Structure,
        settings: TrainSettings,
        device: torch.device,
        *,
        data: str | None = None,
        sampling: Sampling = Sampling(),
        on_step=None,
        runtime: Runtime | None = None,
        save_at: Path | None = None,
        save_every: int = 0,
    ) -> Supernet:
        """Build the supernet of ``structure`` and train it, running the configurations of ``sampling``.

        ``runtime``: precision, loader workers, the processes of a ``torchrun`` job. ``save_at``: a
        resumable state saved there every ``save_every`` steps, and resumed from when one is there."""
        settings = replace(settings, gate_phases=LEARN_GATES_THROUGHOUT)
        precision = runtime.precision if runtime is not None else "32"
        elastic = elastic_parameters(space)
        largest, smallest = supernet_values(space)
        values = {**structure.values(space), **largest}
        smallest = {**values, **smallest}
        spec, datasets, model = build_run(space, values, settings, data=data)
        generator = torch.Generator().manual_seed(settings.seed + 1)

        def drawn() -> dict[str, Any]:
            return {
                **values,
                **{
                    key: allowed[int(torch.randint(len(allowed), (1,), generator=generator))]
                    for key, allowed in elastic.items()
                },
            }

        def sandwich_step(
            model, batch, task, optimizer, settings, *, clip_gates=False, where="", scaler=None, runtime=None
        ):
            """One optimiser step over the largest, the smallest and random configurations."""
            runtime = runtime or Runtime(batch.images.device)
            scale = StepScale.of(runtime, len(batch))
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            result = None
            with runtime.step_scope(model):
                for values_i in (values, smallest, *(drawn() for _ in range(sampling.random))):
                    configure(model, space, values_i)
                    with runtime.autocast():
                        logits = forward_batch(model, batch).float()
                    if teacher is None or not sampling.distill:
                        loss = task_loss(logits, batch, task)
                    else:
                        loss = distillation_loss(logits, teacher, task)
                    objective = scale.task * loss + scale.balance * settings.balance_weight * balance_term(model)
                    if not runtime.agree(bool(torch.isfinite(objective))):
                        raise TrainingError(f"loss became {objective.item()}" + (f" at {where}" if where else ""))
                    (objective if scaler is None else scaler.scale(objective)).backward()
                    if teacher is None:
                        teacher = logits.detach()
                        result = (task_loss(teacher, batch, task).detach(), teacher)
            finish_step(model, optimizer, settings, runtime, scaler, clip_gates=clip_gates)
            assert result is not None
            return result

        def uniform_step(model, batch, *args, **kwargs):
            configure(model, space, drawn())  # this step's configuration
            return train_step(model, batch, *args, **kwargs)

        saving = None
        if save_at is not None:  # resumable: continue from a state saved there by the same training
            identity = {
                "supernet": structure.label,
                "space": space.name,
                "data": datasets.spec,
                "settings": settings.to_dict(),
                "sampling": sampling.to_dict(),
                **_precision_record(precision),
            }
            resume = saved_by(save_at, identity)
            if runtime is not None:  # a job resumes as rank 0 finds (the state must be on a mount every process reads)
                resume = bool(runtime.broadcast(int(resume)))
            saving = Saving(save_at, save_every, identity, resume=resume, generators=(generator,))
        start = time.perf_counter()
        set_execution(model, "masked")  # the same outputs and gradients as sparse; faster for narrow paths
        try:
            fit(
                model,
                datasets,
                settings,
                device,
                on_step=on_step,
                freeze_gates=False,
                step_fn=sandwich_step if sampling.rule == "sandwich" else uniform_step,
                runtime=runtime,
                saving=saving,
            )
        finally:
            set_execution(model, "sparse")
        if saving is not None:
            saving.finished(runtime or Runtime(device))
        seconds = time.perf_counter() - start
        net = cls(space, structure, model, spec, datasets, settings, seconds, sampling, precision)
        configure(model, space, values)
        return net

    def values(self, elastic: dict[str, Any]) -> dict[str, Any]:
        return {**self.structure.values(self.space), **elastic}

    def score(
        self, values: dict[str, Any], split: Split, device: torch.device, *, recalibrate: int, usage: bool = True
    ) -> EvalResult:
        """Accuracy of the configuration ``values`` with the shared weights (masked execution: the same
        outputs as sparse, faster for these narrow paths on a CPU)."""
        configure(self.model, self.space, values)
        recalibrate_batch_norm(self.model, self.data.train, recalibrate, self.settings.batch_size, device)
        set_execution(self.model, "masked")
        try:
            return evaluate(self.model, split, self.data.task, self.settings.eval_batch_size, device, usage=usage)
        finally:
            set_execution(self.model, "sparse")

    def finetune(
        self, values: dict[str, Any], steps: int, device: torch.device, runtime: Runtime | None = None
    ) -> tuple[nn.Module, float]:
        """A copy fixed at ``values``, trained ``steps`` steps from the shared weights; its accuracy on
        the whole validation split. ``runtime``: as for :meth:`train` (data parallel under ``torchrun``)."""
        model = copy.deepcopy(self.model)
        configure(model, self.space, values)
        for module in model.modules():
            if isinstance(module, GateConnectModule):
                module.freeze()  # the configuration's connectivity: its top-K gates
        set_execution(model, "masked")
        try:
            if steps > 0:  # fit ends with an evaluation on the validation split
                settings = replace(self.settings, epochs=1, steps_per_epoch=steps)
                accuracy = fit(model, self.data, settings, device, runtime=runtime)[-1].val_accuracy
            else:
                recalibrate_batch_norm(model, self.data.train, 4, self.settings.batch_size, device)
                accuracy = evaluate(
                    model, self.data.val, self.data.task, self.settings.eval_batch_size, device
                ).accuracy
        finally:
            set_execution(model, "sparse")
        return model, accuracy

    # Saved as an ordinary checkpoint, so workers on this machine share one training.
    def save(self, path: Path) -> Path:
        return save_checkpoint(
            path,
            self.model,
            self.spec,
            supernet={
                "structure": self.structure.label,
                "space": self.space.name,
                "settings": self.settings.to_dict(),
                "sampling": self.sampling.to_dict(),
                **_precision_record(self.precision),
                "train_seconds": self.train_seconds,
            },
            data={"spec": self.data.spec, "input_size": self.spec.config.input_size},
        )

    @classmethod
    def load(
        cls,
        path: Path,
        space: Space,
        structure: Structure,
        settings: TrainSettings,
        data: Datasets,
        device,
        sampling: Sampling = Sampling(),
        precision: str = "32",
    ) -> Supernet | None:
        """The supernet saved at ``path`` if it was trained for the same space, structure, settings,
        sampling and precision."""
        if not is_checkpoint(path):
            return None
        ckpt = load_checkpoint(path, device)
        recorded = ckpt.meta.supernet
        expected = json.loads(json.dumps(replace(settings, gate_phases=LEARN_GATES_THROUGHOUT).to_dict()))
        if (
            recorded.get("structure") != structure.label
            or recorded.get("space") != space.name
            or recorded.get("settings") != expected
            or recorded.get("sampling") != sampling.to_dict()
            or recorded.get("precision", "32") != precision
        ):
            return None
        settings = TrainSettings.from_dict(recorded["settings"])
        seconds = float(recorded["train_seconds"])
        return cls(space, structure, ckpt.model, ckpt.spec, data, settings, seconds, sampling, precision)
