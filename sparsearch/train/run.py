"""Train one configuration of a space end to end, and evaluate a checkpoint.

``train_space`` is what ``sparsearch train`` runs and what a study's trial runs: data -> model of the
configuration (the space's proxy by default) -> :func:`~sparsearch.train.loop.fit` -> validation with
usage statistics -> checkpoint. ``evaluate_checkpoint`` is ``sparsearch eval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.choices import NETWORKS
from sparsearch.cost import count
from sparsearch.cost.walk import network_cost  # compacted models no longer match their config
from sparsearch.data import Datasets, is_plugin, load_data
from sparsearch.errors import ConfigError
from sparsearch.models.convert import from_torchvision, is_torchvision
from sparsearch.models.inference import for_inference
from sparsearch.safe_io import refuse_foreign
from sparsearch.spaces import Space
from sparsearch.train.checkpoint import (
    CheckpointError,
    is_checkpoint,
    load_checkpoint,
    load_weights_file,
    save_checkpoint,
)
from sparsearch.train.latency import Latency, forward, measure
from sparsearch.train.loop import EpochStats, EvalResult, StepInfo, evaluate, fit, resolve_device
from sparsearch.train.model import ModelSpec, build_task_model
from sparsearch.train.resume import Saving, resume_path
from sparsearch.train.runtime import Runtime
from sparsearch.train.settings import TrainSettings

__all__ = [
    "RunResult",
    "build_run",
    "checkpoint_data",
    "cost_dict",
    "evaluate_checkpoint",
    "measure_latency",
    "model_flops",
    "model_spec",
    "network_config",
    "train_space",
]


@dataclass
class RunResult:
    spec: ModelSpec
    model: nn.Module
    history: list[EpochStats]
    val: EvalResult
    seconds: float
    metrics: dict[str, Any]
    checkpoint: Path | None
    space: str = ""  # the space's name
    values: dict[str, Any] | None = None  # the configuration trained
    data: str = ""  # the data spec it trained on
    device: str = ""

    def summary(self) -> dict[str, Any]:
        """What ``sparsearch train --json`` prints: where, what, on what, and the metrics (epochs last)."""
        return {
            "checkpoint": str(self.checkpoint),
            "space": self.space,
            "values": self.values,
            "data": self.data,
            "device": self.device,
            **{k: v for k, v in self.metrics.items() if k != "epochs"},
            "epochs": self.metrics["epochs"],
        }


def network_config(space: Space, values: dict[str, Any], network: str, connectivity: str | None = None):
    """The configuration trained for ``values``: the space's proxy or target, with the GateConnect
    ``connectivity`` if given."""
    if network not in NETWORKS:
        raise ConfigError(f"network={network!r}; allowed: {', '.join(NETWORKS)}")
    config = space.proxy_config(values) if network == "proxy" else space.target_config(values)
    if connectivity is not None:
        if not config.multi_stream:
            raise ConfigError(f"space {space.name} has no GateConnect stage; --connectivity does not apply")
        config = config.with_connectivity(connectivity)
    return config


def model_spec(config, data: Datasets, settings: TrainSettings) -> ModelSpec:
    vqa = {"hidden": settings.vqa_hidden, "embed_dim": settings.vqa_embed_dim, "dropout": settings.vqa_dropout}
    return ModelSpec.for_data(config, data.task, data.classes, data.in_channels, data.vocab, vqa)


def build_run(
    space: Space,
    values: dict[str, Any],
    settings: TrainSettings,
    *,
    data: str | None = None,
    network: str = "proxy",
    connectivity: str | None = None,
) -> tuple[ModelSpec, Datasets, nn.Module]:
    """The data and the freshly initialised model (seeded by ``settings.seed``) of one configuration."""
    config = network_config(space, values, network, connectivity)
    datasets = load_data(
        space.proxy.recipe(data).data,
        input_size=config.input_size,
        seed=settings.seed,
        val_fraction=settings.val_fraction,
    )
    spec = model_spec(config, datasets, settings)
    torch.manual_seed(settings.seed)  # the same initial weights for the same seed
    return spec, datasets, build_task_model(spec)


def _init_weights(model: nn.Module, path: str) -> dict[str, int]:
    """Copy the tensors of ``path`` whose names and shapes match; refuse a file that matches nothing.
    A torchvision-layout ResNeXt state dict is renamed to sparsearch's names first
    (:func:`~sparsearch.models.convert.from_torchvision`; for a VQA model, onto its backbone)."""
    found = load_weights_file(path)
    own = model.state_dict()
    if is_torchvision(found):
        found = from_torchvision(found)
        if any(k.startswith("backbone.") for k in own):
            found = {f"backbone.{k}": v for k, v in found.items()}
    usable = {k: v for k, v in found.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise CheckpointError(f"{path}: none of its {len(found)} tensors matches the model by name and shape")
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "model_tensors": len(own), "file_tensors": len(found)}


def train_space(
    space: Space,
    values: dict[str, Any],
    settings: TrainSettings,
    device: torch.device | str,
    *,
    data: str | None = None,
    network: str = "proxy",
    connectivity: str | None = None,
    init: str | None = None,
    out: str | Path | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    runtime: Runtime | None = None,
    save_every: int = 0,
    resume: bool = False,
) -> RunResult:
    """Train the ``network`` of ``space`` at ``values`` on ``data`` (default: the space's proxy data).
    ``device``: a torch device, or its name (``"cpu"``, ``"cuda:1"``, ``"auto"``). ``runtime``: precision,
    layout, loader workers, the processes of a ``torchrun`` job (default: one process on ``device``).
    ``save_every``: save a resumable state beside ``out`` (``OUT.resume``) every so many steps; ``resume``:
    continue from it. Only rank 0 writes."""
    device = resolve_device(device) if isinstance(device, str) else device
    runtime = runtime or Runtime(device)
    if out is not None:  # refused now, not after the training
        refuse_foreign(out, is_checkpoint, "a sparsearch checkpoint", CheckpointError)
    if (save_every or resume) and out is None:
        raise ConfigError("a resumable run needs --out (its state is kept beside the checkpoint)")
    spec, datasets, model = build_run(space, values, settings, data=data, network=network, connectivity=connectivity)
    config = spec.config
    initialised = _init_weights(model, init) if init is not None else None
    saving = None
    if out is not None and (save_every or resume):
        identity = {
            "space": space.name,
            "values": values,
            "network": network,
            "connectivity": connectivity,
            "data": datasets.spec,
            "settings": settings.to_dict(),
            "init": init,
            "precision": runtime.precision,
        }
        saving = Saving(resume_path(out), save_every, identity, resume=resume)
    start = time.perf_counter()
    history = fit(model, datasets, settings, device, on_step, on_epoch, runtime=runtime, saving=saving)
    seconds = time.perf_counter() - start
    val = evaluate(model, datasets.val, datasets.task, settings.eval_batch_size, device, usage=True, runtime=runtime)
    cost = count(spec.config)
    metrics = {
        "split": "val",
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "val_vqa_accuracy": val.vqa_accuracy,
        "val_examples": val.examples,
        "train_seconds": seconds,
        "epochs": [vars(h) for h in history],
        "executed_flops": cost.executed_flops,
        "dense_flops": cost.dense_flops,
        "params": sum(p.numel() for p in model.parameters()),
    }
    checkpoint = None
    if out is not None and runtime.is_main:
        checkpoint = save_checkpoint(
            out,
            model,
            spec,
            space={"name": space.name, "source": space.source, "values": values, "network": network},
            data={"spec": datasets.spec, "input_size": config.input_size, "val_fraction": settings.val_fraction},
            training={
                **settings.to_dict(),
                "device": str(device),
                "init": init,
                "initialised": initialised,
                "processes": runtime.world,
                "precision": runtime.precision,
                "channels_last": runtime.channels_last,
            },
            target_cost=cost_dict(count(space.target_config(values))),
            metrics=metrics,
            usage=val.usage,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    if saving is not None:
        saving.finished(runtime)
    return RunResult(
        spec, model, history, val, seconds, metrics, checkpoint, space.name, values, datasets.spec, str(device)
    )


def cost_dict(report) -> dict[str, int]:
    """The totals of a :class:`~sparsearch.cost.CostReport` as plain ints."""
    return {
        "executed_flops": report.executed_flops,
        "dense_flops": report.dense_flops,
        "executed_macs": report.executed_macs,
        "dense_macs": report.dense_macs,
        "params": report.params,
    }


@torch.no_grad()
def measure_latency(model: nn.Module, batch) -> Latency:
    """Latency of one forward pass of ``batch`` through the inference form of ``model``
    (:func:`sparsearch.models.inference.for_inference`, :func:`sparsearch.train.latency.measure`)."""
    return measure(forward(for_inference(model), batch), cuda=batch.images.is_cuda)


def model_flops(model: nn.Module, batch) -> int:
    from sparsearch.cost.verify import flop_counter_flops

    one = batch.images[:1]
    if batch.tokens is None:
        return flop_counter_flops(model, one)
    return flop_counter_flops(model, one, batch.tokens[:1], batch.lengths[:1])


def checkpoint_data(ckpt, data: str | None = None) -> Datasets:
    """The data a checkpoint was trained on (or ``data``), split as it was, checked to fit its model."""
    spec_data = data or ckpt.meta.data
    if not spec_data:
        raise CheckpointError(f"{ckpt.path}: config.json names no data; give --data")
    if data is None and is_plugin(spec_data):  # a file never chooses code to run
        raise CheckpointError(
            f"{ckpt.path}: its data is the plug-in {spec_data!r}; plug-ins run only when named on the "
            f"command line: give --data {spec_data}"
        )
    datasets = load_data(
        spec_data,
        input_size=ckpt.spec.config.input_size,
        seed=ckpt.meta.seed,
        val_fraction=ckpt.meta.val_fraction,
        vocab=ckpt.spec.vocab,
    )
    if datasets.task != ckpt.spec.task:
        raise ConfigError(f"data {spec_data!r} is for {datasets.task}; the checkpoint's model does {ckpt.spec.task}")
    if datasets.num_classes > len(ckpt.spec.classes) or datasets.in_channels != getattr(
        ckpt.spec.config, "in_channels", 3
    ):
        raise ConfigError(f"data {spec_data!r} does not fit the checkpoint's model (classes or channels differ)")
    return datasets


def group_accuracy(
    predictions: Tensor, labels: Tensor, groups: Tensor | None, names: tuple[str, ...] | None
) -> dict[str, dict[str, float | int]]:
    """Accuracy and examples of each prefix of the groups' names ("relational"), then of each group
    ("relational/count"); empty where the data has no groups."""
    if groups is None or not names:
        return {}
    right = predictions == labels
    members = {}
    for prefix in dict.fromkeys(name.split("/")[0] for name in names if "/" in name):
        members[prefix] = torch.stack([groups == i for i, n in enumerate(names) if n.startswith(f"{prefix}/")]).any(0)
    members.update({name: groups == i for i, name in enumerate(names)})
    return {
        name: {"accuracy": float(right[rows].double().mean()), "examples": int(rows.sum())}
        for name, rows in members.items()
        if rows.any()
    }


def evaluate_checkpoint(
    path: str | Path,
    device: torch.device | str,
    *,
    data: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    latency_batch: int = 32,
    workers: int = 0,
) -> dict[str, Any]:
    """Accuracy, loss, per-class report, FLOPs per example and measured latency of a checkpoint.
    ``device``: a torch device, or its name."""
    device = resolve_device(device) if isinstance(device, str) else device
    from sklearn.metrics import classification_report

    if batch_size < 1 or latency_batch < 1:
        raise ConfigError("--batch-size and --latency-batch must be positive integers")
    ckpt = load_checkpoint(path, device)
    datasets = checkpoint_data(ckpt, data)
    spec_data = datasets.spec
    chosen = datasets.split(split)
    runtime = Runtime(device, workers=workers)  # workers read data streamed from disk
    shipped = for_inference(ckpt.model)  # what an export runs: folded norms, fused epilogues
    result = evaluate(shipped, chosen, datasets.task, batch_size, device, usage=True, runtime=runtime)
    names = list(ckpt.spec.classes)
    report = classification_report(
        result.labels.numpy(),
        result.predictions.numpy(),
        labels=list(range(len(names))),
        target_names=names,
        output_dict=True,
        zero_division=0,
    )
    latency_batch = min(latency_batch, len(chosen))
    batch = chosen.batch(torch.arange(latency_batch)).to(device)
    latency = measure(forward(shipped, batch), cuda=batch.images.is_cuda)
    cost = network_cost(ckpt.model)
    return {
        "checkpoint": str(path),
        "data": spec_data,
        "split": split,
        "examples": result.examples,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "vqa_accuracy": result.vqa_accuracy,
        "per_class": {name: report[name] for name in names},
        "per_group": group_accuracy(result.predictions, result.labels, chosen.groups, datasets.groups),
        "network_executed_flops": cost.executed_flops,
        "network_dense_flops": cost.dense_flops,
        "model_flops": model_flops(ckpt.model, batch),
        "units": "per example; FLOPs = 2 x MACs; network = the family's network (analytic: the CNN, or the whole"
        " model for a family that reads the question), model = everything (FlopCounterMode)",
        "latency": {"batch": latency_batch, "ms_per_batch": latency.ms, **latency.to_dict(), "device": str(device)},
        "usage": result.usage,
    }
