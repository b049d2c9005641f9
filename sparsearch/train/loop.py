"""One training loop for classification and VQA, and evaluation.

The loss is the task loss (cross-entropy; VQA: binary cross-entropy against soft scores) plus
``balance_weight`` × the sum of the top-k blocks' CV² balance terms. A non-finite loss stops the run
with :class:`TrainingError` naming the epoch and step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.data import Batch, Datasets, Reading, Split
from sparsearch.data.stream import StreamSplit
from sparsearch.errors import SparsearchError
from sparsearch.layers import GateConnectModule, TopKBottleneck, clip_gates_, split_gate_parameters
from sparsearch.models import vqa_loss
from sparsearch.train.resume import Saving
from sparsearch.train.runtime import Runtime, StepScale
from sparsearch.train.settings import TrainSettings
from sparsearch.train.usage import UsageRecorder

__all__ = [
    "EpochStats",
    "EvalResult",
    "StepInfo",
    "TrainingError",
    "balance_term",
    "distillation_loss",
    "epoch_steps",
    "evaluate",
    "finish_step",
    "fit",
    "forward_batch",
    "make_optimizer",
    "resolve_device",
    "task_loss",
    "train_step",
]


class TrainingError(SparsearchError):
    """Training cannot go on (a non-finite loss)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; otherwise any torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise SparsearchError(f"device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SparsearchError(f"device {name!r}: CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class StepInfo:
    epoch: int  # from 1
    step: int  # within the epoch, from 1
    steps: int  # steps in the epoch
    batch_loss: float  # task loss of this step's batch
    loss: float  # mean task loss of the epoch so far
    accuracy: float
    samples_per_s: float  # over all processes of a torchrun job
    step_global: int = 0  # steps done in the run, from 1
    steps_total: int = 0  # steps in the run


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    samples_per_s: float
    lr: float


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    vqa_accuracy: float | None  # VQA only: mean soft score of the arg-max answer
    examples: int
    predictions: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    usage: dict[str, Any] | None = None


def forward_batch(model: nn.Module, batch: Batch) -> Tensor:
    if batch.tokens is None:
        return model(batch.images)
    return model(batch.images, batch.tokens, batch.lengths)


def task_loss(logits: Tensor, batch: Batch, task: str) -> Tensor:
    """Cross-entropy (classification) or binary cross-entropy against soft scores (VQA)."""
    if task == "vqa":  # one answer per easy-VQA question: the soft score is 1 for it
        scores = F.one_hot(batch.labels, logits.shape[1]).to(logits.dtype)
        return vqa_loss(logits, scores)
    return F.cross_entropy(logits, batch.labels)


def distillation_loss(logits: Tensor, teacher: Tensor, task: str) -> Tensor:
    """Loss of ``logits`` against a teacher's logits (in-place distillation, Yu et al. 2020): the
    teacher's probabilities as soft targets, in the form of the task's own loss."""
    teacher = teacher.detach()
    if task == "vqa":  # per-answer probabilities, as VQA's soft scores
        return vqa_loss(logits, torch.sigmoid(teacher))
    return F.cross_entropy(logits, F.softmax(teacher, dim=1))


def balance_term(model: nn.Module) -> Tensor | float:
    """Sum of the top-k blocks' CV² balance terms of the last forward pass."""
    terms = [m.balance_loss for m in model.modules() if isinstance(m, TopKBottleneck) and m.balance_loss is not None]
    return sum(terms) if terms else 0.0


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    weights, gates = split_gate_parameters(model)
    groups = [
        {"params": [p for p in weights if p.requires_grad], "weight_decay": settings.weight_decay, "kind": "weights"}
    ]
    if gates:  # their own learning rate, no decay (seed 003, App. E)
        groups.append({"params": gates, "weight_decay": 0.0, "kind": "gates"})
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0)
    if settings.optimizer == "adamax":
        return torch.optim.Adamax(groups, lr=settings.lr)
    return torch.optim.AdamW(groups, lr=settings.lr)


def _learned_gates(model: nn.Module) -> list[GateConnectModule]:
    return [m for m in model.modules() if isinstance(m, GateConnectModule) and not m.frozen]


def _phase_ends(settings: TrainSettings, total: int) -> list[int]:
    """Global step at which each GateConnect phase ends."""
    ends, acc = [], 0.0
    for phase in settings.gate_phases:
        acc += phase.share
        ends.append(round(acc * total))
    ends[-1] = total
    return ends


def epoch_steps(data: Datasets, settings: TrainSettings) -> int:
    """Optimiser steps in one epoch: batches of the training split, capped by ``steps_per_epoch``."""
    steps = math.ceil(len(data.train) / settings.batch_size)
    return steps if settings.steps_per_epoch is None else min(steps, settings.steps_per_epoch)


def fit(
    model: nn.Module,
    data: Datasets,
    settings: TrainSettings,
    device: torch.device,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    *,
    freeze_gates: bool = True,
    step_fn: Callable[..., tuple[Tensor, Tensor]] | None = None,
    runtime: Runtime | None = None,
    saving: Saving | None = None,
) -> list[EpochStats]:
    """Train ``model`` on ``data.train``, evaluating on ``data.val`` after each epoch.

    GateConnect connectivity ends frozen to the top-K gates unless ``freeze_gates`` is False (a supernet
    keeps learning it, so that it can rank inputs for any K). ``step_fn`` replaces :func:`train_step`
    (same arguments and result), e.g. a supernet's sandwich step. ``runtime``: precision, layout, loader
    workers and the processes of a ``torchrun`` job (default: one process on ``device``). ``saving``:
    where to save a resumable state every so many steps, and the state to resume from.
    """
    runtime = runtime or Runtime(device)
    with deterministic(runtime.device):
        return _fit(model, data, settings, runtime, on_step, on_epoch, freeze_gates, step_fn or train_step, saving)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """On the CPU, PyTorch's deterministic kernels while training, the previous mode restored after.

    With more than one thread, the backward of the sparse top-k block's gathers (``index_put_`` with
    accumulation) otherwise adds in thread order, and the same seed gave different weights run to run
    (2 cores); the deterministic kernels cost about 5% of a GateConnect digits training here.
    """
    if device.type != "cpu":  # CUDA's would need CUBLAS_WORKSPACE_CONFIG; its runs are not promised equal
        yield
        return
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _fit(model, data, settings, runtime: Runtime, on_step, on_epoch, freeze_gates, step_fn, saving) -> list[EpochStats]:
    runtime.prepare(model)
    optimizer = make_optimizer(model, settings)
    scaler = runtime.grad_scaler()
    generator = torch.Generator().manual_seed(settings.seed)
    steps = epoch_steps(data, settings)
    total = steps * settings.epochs
    gated = _learned_gates(model)  # GateConnect modules still learning their connectivity
    ends = _phase_ends(settings, total) if gated else []
    history: list[EpochStats] = []
    step_global, first_epoch, skip = 0, 1, 0
    tally = (0, 0.0, 0, 0.0)  # examples, loss sum, correct, seconds of the epoch so far
    resumed = saving.resumed if saving is not None else None
    if resumed is not None:  # the model, optimiser, generators and counters as they were saved
        resumed.restore(model, optimizer, scaler, generator, saving.generators)
        history = [EpochStats(**h) for h in resumed.history]
        step_global, first_epoch, skip, tally = resumed.step_global, resumed.epoch, resumed.step, resumed.tally
    step_options = {"scaler": scaler, "runtime": runtime}
    lr = settings.lr
    for epoch in range(first_epoch, settings.epochs + 1):
        model.train()
        epoch_state = generator.get_state()  # a resumed run redraws this epoch's order from here
        start = time.perf_counter() - tally[3]
        seen, loss_sum, correct = tally[:3]
        reading = Reading(runtime.rank, runtime.world, skip, runtime.workers, runtime.pin_memory)
        batches = data.train.batches(settings.batch_size, shuffle=True, generator=generator, reading=reading)
        for step, batch in enumerate(batches, skip + 1):
            if step > steps:
                break
            lr = _set_lr(optimizer, settings, step_global, total, ends, gated)
            batch = batch.to(runtime.device)
            batch = Batch(runtime.images(batch.images), batch.labels, batch.tokens, batch.lengths)
            loss, logits = step_fn(
                model,
                batch,
                data.task,
                optimizer,
                settings,
                clip_gates=bool(gated),
                where=f"epoch {epoch}, step {step}",
                **step_options,
            )
            step_global += 1
            n = len(batch)
            seen += n
            loss_sum += loss.item() * n
            correct += int((logits.argmax(1) == batch.labels).sum())
            elapsed = time.perf_counter() - start
            if on_step is not None:
                on_step(
                    StepInfo(
                        epoch,
                        step,
                        steps,
                        loss.item(),
                        loss_sum / seen,
                        correct / seen,
                        seen * runtime.world / max(elapsed, 1e-9),
                        step_global,
                        total,
                    )
                )
            if saving is not None and saving.due(step_global) and step < steps:  # not at an epoch's end
                saving.save(
                    model,
                    optimizer,
                    scaler,
                    generator_at_epoch=epoch_state,
                    epoch=epoch,
                    step=step,
                    step_global=step_global,
                    tally=(seen, loss_sum, correct, elapsed),
                    history=[vars(h) for h in history],
                    runtime=runtime,
                )
        skip, tally = 0, (0, 0.0, 0, 0.0)
        seconds = time.perf_counter() - start
        val = evaluate(model, data.val, data.task, settings.eval_batch_size, runtime.device, runtime=runtime)
        stats = EpochStats(
            epoch,
            loss_sum / max(seen, 1),
            correct / max(seen, 1),
            val.loss,
            val.accuracy,
            seconds,
            seen * runtime.world / seconds,
            lr,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    for m in gated if freeze_gates else ():  # a run shorter than phase 1 still ends with a fixed connectivity
        m.freeze()
    return history


def train_step(
    model: nn.Module,
    batch: Batch,
    task: str,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    *,
    clip_gates: bool = False,
    where: str = "",
    scaler: torch.amp.GradScaler | None = None,
    runtime: Runtime | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimiser step on ``batch``; returns the task loss and the logits.

    Raises :class:`TrainingError` (naming ``where``) if the loss is not finite, before any update. Under
    ``torchrun`` (``runtime`` with several processes) the step is the one process's step on the global batch.
    """
    runtime = runtime or Runtime(batch.images.device)
    scale = StepScale.of(runtime, len(batch))
    with runtime.step_scope(model):
        with runtime.autocast():
            logits = forward_batch(model, batch)
        loss = task_loss(logits.float(), batch, task)
        objective = scale.task * loss + scale.balance * settings.balance_weight * balance_term(model)
        if not runtime.agree(bool(torch.isfinite(objective))):
            raise TrainingError(f"loss became {objective.item()}" + (f" at {where}" if where else ""))
        optimizer.zero_grad(set_to_none=True)
        (objective if scaler is None else scaler.scale(objective)).backward()
    finish_step(model, optimizer, settings, runtime, scaler, clip_gates=clip_gates)
    return loss, logits


def finish_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    runtime: Runtime,
    scaler: torch.amp.GradScaler | None = None,
    *,
    clip_gates: bool = False,
) -> None:
    """After the backward pass(es): gradients summed across processes, clipped, the optimiser's step."""
    runtime.reduce_gradients(model)
    if scaler is not None:
        scaler.unscale_(optimizer)
    if settings.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    if clip_gates:
        clip_gates_(model)


def _set_lr(
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    step: int,
    total: int,
    ends: list[int],
    gated: list[GateConnectModule],
) -> float:
    """Learning rate of this step; at the end of GateConnect phase 1, freezes the connectivity."""
    if gated:
        phase = next(i for i, end in enumerate(ends) if step < end or i == len(ends) - 1)
        spec = settings.gate_phases[phase]
        if not spec.learn_gates and not gated[0].frozen:
            for m in gated:
                m.freeze()
        lr = settings.lr * spec.lr_scale
        gate_lr = lr * settings.gate_lr_scale if spec.learn_gates else 0.0
    else:
        scale = 0.5 * (1 + math.cos(math.pi * step / total)) if settings.schedule == "cosine" else 1.0
        lr, gate_lr = settings.lr * scale, 0.0
    for group in optimizer.param_groups:
        group["lr"] = gate_lr if group["kind"] == "gates" else lr
    return lr


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split | StreamSplit,
    task: str,
    batch_size: int,
    device: torch.device,
    *,
    usage: bool = False,
    runtime: Runtime | None = None,
) -> EvalResult:
    """Loss, accuracy (and VQA accuracy) of ``model`` in eval mode; with ``usage``, per-layer usage.

    Every process of a ``torchrun`` job evaluates the whole split (the same result in each, no exchange)."""
    runtime = runtime or Runtime(device)
    model.to(device).eval()
    predictions, labels = [], []
    loss_sum = 0.0
    reading = Reading(workers=runtime.workers, pin_memory=runtime.pin_memory)
    with UsageRecorder(model) if usage else contextlib.nullcontext() as recorder:
        for batch in split.batches(batch_size, reading=reading):
            batch = batch.to(device)
            batch = Batch(runtime.images(batch.images), batch.labels, batch.tokens, batch.lengths)
            with runtime.autocast():
                logits = forward_batch(model, batch).float()
            loss_sum += task_loss(logits, batch, task).item() * len(batch)
            predictions.append(logits.argmax(1).cpu())
            labels.append(batch.labels.cpu())
    pred, true = torch.cat(predictions), torch.cat(labels)
    accuracy = float((pred == true).double().mean())
    return EvalResult(
        loss=loss_sum / len(true),
        accuracy=accuracy,
        vqa_accuracy=accuracy if task == "vqa" else None,  # one answer per question: the soft score is 0 or 1
        examples=len(true),
        predictions=pred,
        labels=true,
        usage=None if recorder is None else recorder.summary(),
    )
