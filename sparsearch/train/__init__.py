"""Training: settings, the loop, usage statistics, safe checkpoints, and one-configuration runs."""

from sparsearch.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_weights_file, save_checkpoint
from sparsearch.train.loop import EpochStats, EvalResult, StepInfo, TrainingError, evaluate, fit, resolve_device
from sparsearch.train.machine import describe_machine
from sparsearch.train.model import ModelSpec, build_task_model
from sparsearch.train.run import RunResult, evaluate_checkpoint, train_space
from sparsearch.train.settings import GatePhase, TrainSettings, default_settings
from sparsearch.train.usage import UsageRecorder

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "EpochStats",
    "EvalResult",
    "GatePhase",
    "ModelSpec",
    "RunResult",
    "StepInfo",
    "TrainSettings",
    "TrainingError",
    "UsageRecorder",
    "build_task_model",
    "default_settings",
    "describe_machine",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "load_weights_file",
    "resolve_device",
    "save_checkpoint",
    "train_space",
]
