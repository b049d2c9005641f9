"""Command-line interface: parses, calls the library, prints.

Every command ends in one line when it fails, with a documented exit code: 2 for input it cannot use
(``error: ...``), 3 for a bug (``internal error: ...``; ``--debug`` or ``SPARSEARCH_DEBUG=1`` prints
the traceback), 4 when the study's storage fails under a command (a full disk, a server gone), 130 when
interrupted (Ctrl-C) and 143 when terminated (SIGTERM); temporaries are removed on the way out in every case.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import signal
import sys
import traceback
from typing import Annotated, Literal

import typer
from typer.exceptions import TyperException

from sparsearch.choices import (
    CONNECTIVITIES,
    EVAL_MODES,
    EVAL_SPLITS,
    EXPORT_FORMATS,
    IMPORTANCES,
    NETWORKS,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    SAMPLING_RULES,
)
from sparsearch.console import TrainProgress, print_convert, print_eval, print_flops, print_prune, print_study
from sparsearch.errors import SparsearchError
from sparsearch.study.samplers import SAMPLERS
from sparsearch.version import __version__

# Choices as Literal types: typer lists them in --help ("<tpe|nsga2|gp|random>") and refuses any other value.
Optimizer = Literal[OPTIMIZERS]
Network = Literal[NETWORKS]
Connectivity = Literal[CONNECTIVITIES]
EvalSplit = Literal[EVAL_SPLITS]
Importance = Literal[IMPORTANCES]
ExportFormat = Literal[EXPORT_FORMATS]
EvalMode = Literal[EVAL_MODES]
SamplingRule = Literal[SAMPLING_RULES]
Objective = Literal[OBJECTIVES]
Precision = Literal[PRECISIONS]
Sampler = Literal[tuple(SAMPLERS)]

app = typer.Typer(
    name="sparsearch",
    help="Search and compress conditionally-computed neural networks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="On an internal error, print the traceback."),
    factories: Annotated[
        list[str] | None,
        typer.Option(
            "--factory",
            metavar="MODULE:FUNCTION",
            help="Allow this model factory (your code) to be imported when a stored study or a checkpoint names "
            "it (repeatable; a space file named on the command line allows its own).",
        ),
    ] = None,
) -> None:
    """Search and compress conditionally-computed neural networks."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    from sparsearch.config import trust_factory

    for factory in factories or []:
        trust_factory(factory)


@app.command("routings")
def routings() -> None:
    """List the registered routing functions."""
    from sparsearch.layers import routing_names

    for name in routing_names():
        typer.echo(name)


@app.command("spaces")
def spaces(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the shipped search spaces."""
    from sparsearch.spaces import get_space, space_names

    rows = [(name, get_space(name).description) for name in space_names()]
    if json_out:
        typer.echo(_json([{"name": n, "description": d} for n, d in rows]))
        return
    width = max(len(n) for n, _ in rows)
    for name, description in rows:
        typer.echo(f"{name:<{width}}  {description}")


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: object) -> str:
    """Strict JSON (what every parser reads): a non-finite number is written as null."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _parse_sets(pairs: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw:
            raise SparsearchError(f"--set {pair!r}: expected stage.knob=value, e.g. conv3.k=16")
        values[key.strip()] = int(raw) if raw.strip().lstrip("-").isdigit() else raw.strip()
    return values


@app.command("flops")
def flops(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a space .yaml file.")],
    sets: Annotated[list[str] | None, typer.Option("--set", help="A knob value, e.g. conv3.k=16 (repeatable).")] = None,
    budget: Annotated[str | None, typer.Option(help="e.g. 50GFLOPs or 25GMACs: say within or over.")] = None,
    verify: Annotated[bool, typer.Option(help="Build the model; compare with FlopCounterMode and thop.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-layer cost of a configuration of SPACE: dense and executed FLOPs and MACs, parameters."""
    from sparsearch.cost import cost_summary, parse_budget
    from sparsearch.spaces import get_space

    target_budget = None if budget is None else parse_budget(budget)
    chosen = get_space(space)
    config = chosen.target_config(chosen.expand(_parse_sets(sets or [])))
    result = {"space": chosen.name, **cost_summary(config, target_budget)}
    if verify:
        from sparsearch.cost.verify import verify_config

        result["verify"] = verify_config(config)
    if json_out:
        typer.echo(_json(result))
    else:
        print_flops(result)


@app.command("convert")
def convert(
    factory: Annotated[
        str, typer.Argument(help="Your model factory, module:function (this names it: it is imported).")
    ],
    input_size: Annotated[int, typer.Option(help="Input height and width to check and count at.")] = 224,
    in_channels: Annotated[int, typer.Option(help="Input channels the factory is asked for.")] = 3,
    num_classes: Annotated[int, typer.Option(help="Classes the factory is asked for.")] = 1000,
    routing: Annotated[
        list[str] | None, typer.Option(help="Also check the whole model with this gate on every block (repeatable).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Convert a model factory's grouped bottlenecks into top-k blocks: each block checked in float64, what
    is left and why, and the cost per example (analytic blocks, FlopCounterMode for the rest)."""
    from sparsearch.config import trust_factory
    from sparsearch.cost import cost_summary
    from sparsearch.limits import check_int
    from sparsearch.models.user import conversion_report

    check_int("input_size", input_size, 8)
    check_int("in_channels", in_channels, 1, 4096)
    check_int("num_classes", num_classes, 2)
    trust_factory(factory)
    result, config = conversion_report(factory, input_size, in_channels, num_classes, tuple(routing or ()))
    result["cost"] = cost_summary(config)["total"]
    if json_out:
        typer.echo(_json(result))
    else:
        print_convert(result)


@app.command("train")
def train(
    out: Annotated[
        str, typer.Option("--out", help="Checkpoint directory to write (created; a checkpoint there is replaced).")
    ],
    space: Annotated[str, typer.Option(help="A shipped space name or a path to a space .yaml file.")] = "default",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="A knob value: conv3.k=16, or k=16 for every stage (repeatable).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="easy-vqa, digits, cifar10:DIR, cifar100:DIR or module:function (default: the space's proxy data)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the space's proxy epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step (default 64).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: SGD 0.05; VQA Adamax 0.002).")] = None,
    optimizer: Annotated[
        Optimizer | None, typer.Option(help="Optimizer (default: sgd; VQA adamax).", case_sensitive=False)
    ] = None,
    balance_weight: Annotated[float | None, typer.Option(help="Weight of the CV² balance term (default 0.01).")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Cap on steps per epoch (quick runs).")] = None,
    network: Annotated[
        Network, typer.Option(help="The space's CPU proxy or its target.", case_sensitive=False)
    ] = "proxy",
    connectivity: Annotated[
        Connectivity | None,
        typer.Option(
            help="GateConnect stages: learned (default), fixed_full (every gate on) or fixed_random (the baseline).",
            case_sensitive=False,
        ),
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="Start from these weights: a checkpoint, .safetensors, .pt or .pth.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, the split and the batch order.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...")] = "auto",
    precision: Annotated[
        Precision, typer.Option(help="32 (float32), or autocast to bf16 or fp16 (CUDA; with a gradient scaler).")
    ] = "32",
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Images and convolution weights in NHWC memory layout.")
    ] = False,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes for data read from disk.")] = 2,
    save_every: Annotated[
        int, typer.Option(help="Save a resumable state (OUT.resume) every this many steps; 0: never.")
    ] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the state saved in OUT.resume.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Train one configuration of a space and write a checkpoint (safetensors + config.json).

    Under torchrun (torchrun --nproc_per_node=N -m sparsearch train ...) N processes train data-parallel
    at the same global --batch-size; rank 0 writes."""
    from sparsearch.data import data_task
    from sparsearch.spaces import get_space
    from sparsearch.train import default_settings, train_space

    chosen = get_space(space)
    values = chosen.expand(_parse_sets(sets or []))
    chosen.target_config(values)  # refuse bad values before loading any data
    dataset, epochs = chosen.proxy.recipe(data, epochs)
    settings = default_settings(
        data_task(dataset),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        balance_weight=balance_weight,
        steps_per_epoch=steps_per_epoch,
        seed=seed,
    )
    runtime = _runtime(device, precision, channels_last, workers)
    target = runtime.device
    with TrainProgress(enabled=not json_out and runtime.is_main) as (on_step, on_epoch):
        result = train_space(
            chosen,
            values,
            settings,
            target,
            data=dataset,
            network=network,
            connectivity=connectivity,
            init=init,
            out=out,
            on_step=on_step,
            on_epoch=on_epoch,
            runtime=runtime,
            save_every=save_every,
            resume=resume,
        )
    if not runtime.is_main:
        return
    if json_out:
        typer.echo(_json(result.summary()))
        return
    from sparsearch.cost import format_flops

    m = result.metrics
    typer.echo(
        f"trained {len(result.history)} epoch(s) in {m['train_seconds']:.1f} s on {target}: "
        f"val accuracy {m['val_accuracy']:.4f}, val loss {m['val_loss']:.4f} ({m['val_examples']} examples)"
    )
    typer.echo(
        f"network: {format_flops(m['executed_flops'])} executed per example "
        f"({format_flops(m['dense_flops'])} dense), {m['params']:,} parameters"
    )
    typer.echo(f"checkpoint: {result.checkpoint}")


def _one_process(command: str) -> None:
    """Refuse a command that does not run data-parallel when started by torchrun with several processes."""
    from sparsearch.train.runtime import Distributed

    dist = Distributed.from_env()
    if dist is not None and dist.world > 1:
        raise SparsearchError(
            f"sparsearch {command} does not run under torchrun with several processes: a worker scores trials one "
            "process each (start one per device); torchrun runs train, validate and a study's supernets data-parallel"
        )


def _runtime(device: str, precision: str = "32", channels_last: bool = False, workers: int = 0):
    """The run's Runtime; under torchrun, this process's device, having joined the job's process group."""
    from sparsearch.train import resolve_device
    from sparsearch.train.runtime import Distributed, Runtime

    dist = Distributed.from_env()
    target = resolve_device(device) if dist is None else dist.device(device)
    runtime = Runtime(target, precision, channels_last, workers, dist)
    if dist is not None:
        dist.join(target)
        atexit.register(dist.leave)
    return runtime


@app.command("eval")
def eval_(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint directory written by sparsearch train.")],
    data: Annotated[str | None, typer.Option(help="Data to evaluate on (default: the checkpoint's).")] = None,
    split: Annotated[EvalSplit, typer.Option(help="test (final reports) or val.", case_sensitive=False)] = "test",
    batch_size: Annotated[int, typer.Option(help="Examples per evaluation batch.")] = 256,
    latency_batch: Annotated[int, typer.Option(help="Batch size of the latency measurement.")] = 32,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda ...")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes for data read from disk.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a checkpoint: accuracy, loss, per-class report, FLOPs per example, latency."""
    from sparsearch.train import evaluate_checkpoint, resolve_device

    result = evaluate_checkpoint(
        checkpoint,
        resolve_device(device),
        data=data,
        split=split,
        batch_size=batch_size,
        latency_batch=latency_batch,
        workers=workers,
    )
    if json_out:
        typer.echo(_json(result))
    else:
        print_eval(result)


@app.command("prune")
def prune(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint directory written by sparsearch train.")],
    out: Annotated[str, typer.Option(help="Directory to write: the compacted checkpoint and its report.")],
    data: Annotated[
        str | None, typer.Option(help="Calibration and validation data (default: the checkpoint's).")
    ] = None,
    calib_batches: Annotated[int, typer.Option(help="Calibration batches from the training split.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Examples per calibration batch.")] = 64,
    threshold: Annotated[
        float, typer.Option(help="CondConv experts whose routing weight never reaches this are removed.")
    ] = 0.01,
    tolerance: Annotated[
        float, typer.Option(help="Routing weights varying by at most this (std) are constant: the layer folds.")
    ] = 1e-6,
    max_drop: Annotated[
        float, typer.Option(help="Largest validation accuracy drop allowed for usage-based removals.")
    ] = 0.01,
    channels: Annotated[
        float | None, typer.Option(help="Prune this share of the inner channels (torch-pruning importance).")
    ] = None,
    importance: Annotated[
        Importance, typer.Option(help="Channel importance (torch-pruning).", case_sensitive=False)
    ] = "l2",
    round_to: Annotated[int, typer.Option(help="Channels kept per branch or path: a multiple of this.")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tune the compacted model for this many epochs.")] = 0,
    no_export: Annotated[bool, typer.Option("--no-export", help="Skip the torch.export program.")] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda ...")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compact a trained checkpoint: dead blocks and unused paths/experts removed, checked, exported."""
    from sparsearch.compact.prune import PruneSettings, prune_checkpoint
    from sparsearch.train import resolve_device

    settings = PruneSettings(
        calib_batches=calib_batches,
        batch_size=batch_size,
        threshold=threshold,
        tolerance=tolerance,
        max_drop=max_drop,
        channels=channels,
        importance=importance,
        round_to=round_to,
        finetune_epochs=finetune_epochs,
        export=not no_export,
    )
    say = None if json_out else (lambda line: typer.echo(line, err=True))
    report = prune_checkpoint(checkpoint, out, settings, resolve_device(device), data=data, on_stage=say)
    if json_out:
        typer.echo(_json(report))
    else:
        print_prune(report)


@app.command("export")
def export(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint directory (trained, or compacted by prune).")],
    out: Annotated[str, typer.Option(help="Directory to write: the model file, input.json and README.md.")],
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="pt2 (torch.export) or onnx.", case_sensitive=False)
    ] = "pt2",
    atol: Annotated[float, typer.Option(help="Largest difference allowed from the checkpoint's model.")] = 1e-4,
    json_out: Annotated[bool, typer.Option("--json", help="Print what input.json records.")] = False,
) -> None:
    """Export a checkpoint for deployment (pt2 or ONNX): checked on fresh inputs of batch 1 and 3, with its
    input contract (size, channels, normalisation, classes, VQA vocabulary) beside it."""
    from sparsearch.compact.export import export_checkpoint
    from sparsearch.limits import check_number

    check_number("atol", atol, 0, 1, low_open=True)
    result = export_checkpoint(checkpoint, out, format_, atol)
    if json_out:
        typer.echo(_json(result))
        return
    images = result["inputs"]["images"]
    typer.echo(
        f"wrote {out}/{result['model_file']}: {result['task']}, images {tuple(images['shape'])} normalised "
        f"with mean {images['mean'][0]} and std {images['std'][0]}, {len(result['outputs']['logits']['classes'])} "
        f"outputs; max |difference| {result['checks']['max_abs_diff']:.2g} ({result['checks']['runtime']})"
    )


@app.command("latency-table")
def latency_table(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a space .yaml file.")],
    out: Annotated[
        str | None, typer.Option(help="Table file to write (default: studies/latency/<space>-b<batch>.json).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Batch size the blocks are measured at.")] = 1,
    validate: Annotated[
        int, typer.Option(help="Then measure this many random configurations end to end against the prediction.")
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure the latency of every block of SPACE's target at each value of its knobs on this machine (the
    latency model: a configuration's predicted latency is the sum of its blocks' and the fixed part)."""
    from sparsearch.limits import check_int
    from sparsearch.spaces import get_space
    from sparsearch.study.latency_table import build_table, default_table_path, save_table, validate_table

    check_int("batch", batch, 1, 1024)
    check_int("validate", validate, 0, 1000)
    chosen = get_space(space)
    path = out or default_table_path(chosen.name, batch)
    say = None if json_out else (lambda line: typer.echo(line, err=True))
    table = build_table(chosen, batch, log=say)
    save_table(table, path)
    result = {"table": str(path), "space": chosen.name, "batch": batch, "machine": table.machine}
    result["fixed_ms"], result["entries"] = table.fixed_ms, sum(len(r) for r in table.blocks.values())
    if validate:
        result["validation"] = validate_table(table, chosen, validate, log=say)
    if json_out:
        typer.echo(_json(result))
        return
    typer.echo(
        f"wrote {path}: {result['entries']} block entries, fixed part {table.fixed_ms:.1f} ms, "
        f"batch {batch}, {table.machine['threads']} threads on {table.machine['cpu']}"
    )
    if validate:
        v = result["validation"]
        typer.echo(
            f"prediction vs measured on {v['configurations']} random configurations: median |error| "
            f"{v['median_abs_error']:.1%}, largest {v['max_abs_error']:.1%} (target <= 10%: "
            f"{'met' if v['met'] else 'not met'})"
        )


@app.command("study")
def study(
    budget: Annotated[
        str,
        typer.Option(
            help="Target FLOPs per example (50GFLOPs, 25GMACs, 5e10), or predicted target latency (150ms, 0.2s: "
            "needs a latency table, see latency-table)."
        ),
    ],
    space: Annotated[str, typer.Option(help="A shipped space name or a path to a space .yaml file.")] = "default",
    trials: Annotated[
        int | None, typer.Option(help="Trials in the study, references included (default: supernet 100, train 5).")
    ] = None,
    latency_table: Annotated[
        str | None,
        typer.Option(help="A latency budget's table (default: studies/latency/<space>-b1.json, from latency-table)."),
    ] = None,
    target_latency_batch: Annotated[
        list[int] | None,
        typer.Option(help="Batch sizes the Pareto set is timed at as the target (repeatable; default 1)."),
    ] = None,
    objective: Annotated[
        Objective,
        typer.Option(
            help="The second objective: flops (target FLOPs) or latency (predicted; a latency budget).",
            case_sensitive=False,
        ),
    ] = "flops",
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite:///studies/<name>.db); postgresql://...")
    ] = None,
    study_name: Annotated[str | None, typer.Option(help="Study name (default: <space>-<budget>).")] = None,
    sampler: Annotated[Sampler, typer.Option(help="Optuna sampler.", case_sensitive=False)] = "tpe",
    eval_mode: Annotated[
        EvalMode,
        typer.Option(
            "--eval", help="supernet (weight sharing, default) or train (each trial trains).", case_sensitive=False
        ),
    ] = "supernet",
    epochs: Annotated[int | None, typer.Option(help="Proxy training epochs (default: the space's).")] = None,
    data: Annotated[str | None, typer.Option(help="Proxy data (default: the space's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Proxy learning rate (default: SGD 0.05; VQA Adamax 0.002).")] = None,
    supernets: Annotated[int, typer.Option(help="Supernet mode: structures (routing, experts) trained.")] = 1,
    artifact_store: Annotated[
        str | None,
        typer.Option(help="Directory of the artifact store sharing the supernets (default: studies/<name>/store)."),
    ] = None,
    sampling: Annotated[
        SamplingRule,
        typer.Option(
            help="Supernet training steps: sandwich (largest, smallest, random; distilled) or uniform.",
            case_sensitive=False,
        ),
    ] = "sandwich",
    sandwich_random: Annotated[
        int, typer.Option(help="Sandwich sampling: random configurations per step besides the largest and smallest.")
    ] = 1,
    supernet_precision: Annotated[
        Precision,
        typer.Option(help="Supernet training arithmetic: 32, or autocast to bf16 (CPU or CUDA) or fp16 (CUDA)."),
    ] = "32",
    score_examples: Annotated[
        int, typer.Option(help="Validation examples each configuration is scored on (0: all).")
    ] = 1000,
    finetune_steps: Annotated[
        int, typer.Option(help="Supernet mode: fine-tuning steps per Pareto configuration.")
    ] = 60,
    finetune_top: Annotated[int, typer.Option(help="Supernet mode: Pareto configurations fine-tuned.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the sampler, the split, the weights.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda ...")] = "auto",
    jobs: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between heartbeats of a running trial; stale after 3 missed.")
    ] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Search a space under a FLOPs or latency budget: proxy accuracy up, target FLOPs down (Optuna).

    Under torchrun the job's processes train the supernets data-parallel; rank 0 then runs the trials."""
    from sparsearch.study import Progress, make_settings, run_study
    from sparsearch.train.runtime import Distributed

    settings = make_settings(
        space,
        budget,
        latency_table=latency_table,
        eval=eval_mode,
        trials=trials,
        epochs=epochs,
        data=data,
        lr=lr,
        sampler=sampler,
        seed=seed,
        supernets=supernets,
        sampling=sampling,
        sandwich_random=sandwich_random,
        supernet_precision=supernet_precision,
        score_examples=score_examples,
        finetune_steps=finetune_steps,
        finetune_top=finetune_top,
        target_latency_batches=tuple(target_latency_batch or (1,)),
        objective=objective,
    )
    runtime = _runtime(device) if Distributed.from_env() is not None else None
    main_rank = runtime is None or runtime.is_main
    # the second objective's unit (FLOPs or ms)
    progress = Progress(settings.n_trials, settings.cost_budget) if main_rank else None
    run = run_study(
        settings,
        storage_url=storage,  # None: the defaults, as run_study names them
        name=study_name,
        device=device,
        jobs=jobs,
        timeout=timeout,
        progress=progress,
        heartbeat_s=heartbeat,
        artifact_store=artifact_store,
        runtime=runtime,
    )
    if run is None:  # a torchrun job's other ranks: rank 0 reports
        return
    if json_out:
        typer.echo(_json({**run.summary, "report": str(run.report)}))
    else:
        print_study(run.summary, str(run.report))


@app.command("report")
def report(
    study_name: Annotated[str, typer.Argument(help="The study to report on, e.g. default-50GFLOPs.")],
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite:///studies/<STUDY>.db).")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Report directory (default: studies/<STUDY>/report); replaced whole.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Also print the report's numbers as JSON.")] = False,
) -> None:
    """Plot a study: Pareto front, hypervolume, importances, configurations (PNG, HTML, Markdown, JSON)."""
    from sparsearch.report import load_report_data, write_report
    from sparsearch.study import default_storage_url

    data = load_report_data(study_name, storage or default_storage_url(study_name))
    page = write_report(data, out)
    if json_out:
        typer.echo(_json(data))
    else:
        typer.echo(
            f"report of study {study_name}: {len(data['pareto'])} Pareto trial(s) of {data['trials']['complete']} "
            f"complete, hypervolume {data['hypervolume']:.4f}; written to {page}"
        )


@app.command("validate")
def validate(
    study_name: Annotated[str, typer.Argument(help="A finished study, e.g. default-50GFLOPs.")],
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite:///studies/<STUDY>.db).")
    ] = None,
    configs: Annotated[int, typer.Option(help="Configurations trained stand-alone (3 or more).")] = 12,
    seeds: Annotated[int, typer.Option(help="Trainings per configuration, one per seed.")] = 2,
    epochs: Annotated[int | None, typer.Option(help="Stand-alone epochs (default: the study's proxy epochs).")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative FLOPs difference of an equal-cost pair.")] = 0.10,
    jobs: Annotated[int, typer.Option(help="Trainings at once, each in its own process.")] = 1,
    data: Annotated[
        str | None, typer.Option(help="The study's data plug-in, module:function (required for a plug-in study).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda ...")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes for data read from disk.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train configurations of a study stand-alone and measure how well its scores rank them.

    Under torchrun each training runs data-parallel over the job's processes; rank 0 stores the results."""
    from sparsearch.console import print_validation
    from sparsearch.study import ValidationSettings, default_storage_url, run_validation

    settings = ValidationSettings(configs=configs, seeds=seeds, epochs=epochs, tolerance=tolerance)
    url = storage or default_storage_url(study_name)
    runtime = _runtime(device, workers=workers)
    say = None if json_out or not runtime.is_main else (lambda line: typer.echo(line, err=True))
    result = run_validation(url, study_name, settings, device=device, jobs=jobs, data=data, log=say, runtime=runtime)
    if not runtime.is_main:
        return
    if json_out:
        typer.echo(_json(result))
    else:
        print_validation(result)


@app.command("worker")
def worker(
    storage: Annotated[str, typer.Option(help="The study's storage URL, e.g. postgresql://user@host/db.")],
    study_name: Annotated[str, typer.Option(help="The study to join.")],
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda ...")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Sampler seed of this worker (default: random).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop claiming trials after this many seconds.")] = None,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between heartbeats of a running trial; stale after 3 missed.")
    ] = 10,
    data: Annotated[
        str | None, typer.Option(help="The study's data plug-in, module:function (required for a plug-in study).")
    ] = None,
    artifact_store: Annotated[
        str | None,
        typer.Option(help="The study's artifact store as mounted here (default: the directory the study records)."),
    ] = None,
) -> None:
    """Join a study and run its queued trials until none is left."""
    _one_process("worker")
    from sparsearch.study import run_worker

    done = run_worker(
        storage,
        study_name,
        device=device,
        seed=seed,
        timeout=timeout,
        heartbeat_s=heartbeat,
        data=data,
        artifact_store=artifact_store,
        log=lambda line: typer.echo(line, err=True),
    )
    typer.echo(f"worker ran {done} trial(s) of study {study_name}")


EXIT_INPUT, EXIT_BUG, EXIT_STORAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 3, 4, 130, 143
DEBUG_ENV = "SPARSEARCH_DEBUG"


class Terminated(BaseException):
    """SIGTERM or SIGINT, raised where the program is, so that every ``finally`` removes its temporaries
    (and Click, which prints a blank line for a KeyboardInterrupt, stays out of the way)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def _fail(prefix: str, message: str, code: int) -> int:
    line = " ".join(message.splitlines())  # one line, whatever the message holds
    typer.echo(f"{prefix}: {line[:2000]}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    handled = (signal.SIGTERM, signal.SIGINT) if _main_thread() else ()
    previous = {signum: signal.signal(signum, _terminate) for signum in handled}
    previous_hook = sys.unraisablehook
    if handled:
        sys.unraisablehook = functools.partial(_deliver_again, previous_hook)
    try:
        result = app(args=args or ["--help"], prog_name="sparsearch", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _fail("error", "interrupted", EXIT_INTERRUPTED)
    except Terminated as stop:
        if stop.signum == signal.SIGINT:
            return _fail("error", "interrupted; temporary files removed", EXIT_INTERRUPTED)
        return _fail("error", "terminated (SIGTERM); temporary files removed", EXIT_TERMINATED)
    except TyperException as err:  # usage errors: unknown command or option, bad value
        # typer validates choices through pydantic, whose "Value error, " prefix says nothing to a user
        return _fail("error", err.format_message().replace("Value error, ", ""), EXIT_INPUT)
    except (SparsearchError, ValueError, OSError) as err:
        return _fail("error", str(err) or type(err).__name__, EXIT_INPUT)
    except RecursionError:
        return _fail("error", "the input is nested too deeply to read", EXIT_INPUT)
    except MemoryError:
        return _fail("error", "out of memory: the input asks for more than this machine has", EXIT_INPUT)
    except Exception as err:  # a storage that failed under the command, or a bug: say so, and how to see where
        from sparsearch.study.storage import storage_failure

        if (line := storage_failure(err)) is not None:
            return _fail("error", line, EXIT_STORAGE)
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        hint = "" if os.environ.get(DEBUG_ENV) else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        return _fail("internal error", f"{type(err).__name__}: {err}{hint}", EXIT_BUG)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
    return result if isinstance(result, int) else 0


def _deliver_again(previous_hook, unraisable) -> None:
    """A signal whose :class:`Terminated` was raised inside a finaliser or a weakref callback (a library's
    clean-up, run by the garbage collector wherever the program is), where Python ignores exceptions:
    send it again a moment later (from a thread: sent from here, it would be handled here and ignored
    again), so that it is raised where the program goes on, instead of being lost."""
    if isinstance(unraisable.exc_value, Terminated):
        import threading

        again = threading.Timer(0.05, os.kill, (os.getpid(), unraisable.exc_value.signum))
        again.daemon = True
        again.start()
        return
    previous_hook(unraisable)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
