"""The trained network of a configuration and a task, and the record that rebuilds it.

Classification: the configuration's network with a classifier head of the data's class count.
VQA: the configuration's network as the backbone (feature grid, gates conditioned on the question) of
:class:`~sparsearch.models.VQAModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from sparsearch.config import NetworkFamily, TaskFit, config_from_dict, config_to_dict
from sparsearch.cost import count
from sparsearch.cost.count import check_params
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, shown
from sparsearch.models import VQAModel, build_model, fit_config

__all__ = ["ModelSpec", "build_task_model"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained model (stored in a checkpoint's config.json)."""

    task: str  # "classification" or "vqa"
    config: NetworkFamily  # the network (the VQA backbone for "vqa"), as built
    classes: tuple[str, ...]  # class names or answers
    vocab: tuple[str, ...] | None = None  # VQA question vocabulary
    vqa: dict[str, Any] | None = None  # VQA head sizes: hidden, embed_dim, dropout

    @classmethod
    def for_data(
        cls,
        config: NetworkFamily,
        task: str,
        classes: tuple[str, ...],
        in_channels: int,
        vocab: tuple[str, ...] | None = None,
        vqa: dict[str, Any] | None = None,
    ) -> ModelSpec:
        """Fit ``config`` to the data: its channels, its classes, its task (as its family does it)."""
        if task == "vqa" and (vqa is None or vocab is None):
            raise ConfigError("a VQA model needs the vocabulary and the head sizes")
        cond_dim = vqa["hidden"] if task == "vqa" and vqa is not None else None
        fitted = fit_config(config, TaskFit(task, len(classes), in_channels, cond_dim, len(vocab or ())))
        if task == "classification":
            return cls(task, fitted, classes)
        return cls(task, fitted, classes, vocab, dict(vqa or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": config_to_dict(self.config),
            "classes": list(self.classes),
            "vocab": None if self.vocab is None else list(self.vocab),
            "vqa": self.vqa,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        if not isinstance(data, dict) or set(data) != {"task", "config", "classes", "vocab", "vqa"}:
            raise ConfigError("model: expected the keys task, config, classes, vocab, vqa")
        if data["task"] not in ("classification", "vqa"):
            raise ConfigError(f"model: task={data['task']!r}; allowed: classification, vqa")
        if data["task"] == "vqa" and (not isinstance(data["vqa"], dict) or not isinstance(data["vocab"], list)):
            raise ConfigError("model: a VQA model needs 'vocab' (a list) and 'vqa' (head sizes)")
        classes = _names(data["classes"], "classes")
        vocab = None if data["vocab"] is None else _names(data["vocab"], "vocab")
        vqa = data["vqa"]
        if data["task"] == "vqa":
            for key in ("hidden", "embed_dim"):
                check_int(f"model vqa.{key}", vqa.get(key), 1, MAX["channels"])
            dropout = vqa.get("dropout")
            if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
                raise ConfigError(f"model vqa.dropout={shown(dropout)} must be a number in [0, 1)")
        return cls(data["task"], config_from_dict(data["config"]), classes, vocab, vqa)


def _names(value: Any, key: str) -> tuple[str, ...]:
    """A list of names (classes, vocabulary) from config.json, bounded in length."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"model: {key} must be a list of names, got {shown(value)}")
    if not 1 <= len(value) <= MAX["classes"]:
        raise ConfigError(f"model: {key} must hold 1..{MAX['classes']:,} names, got {len(value):,}")
    return tuple(value)


def model_params(spec: ModelSpec) -> int:
    """Parameters of the model ``spec`` builds, counted before building (an upper estimate for VQA heads)."""
    params = count(spec.config).params
    if spec.task == "vqa" and spec.vqa and not spec.config.hosts_question:
        h, e, v, a = spec.vqa["hidden"], spec.vqa["embed_dim"], len(spec.vocab or ()), len(spec.classes)
        c = spec.config.feature_channels()
        params += v * e + 3 * h * (e + h + 2) + 4 * h * (h + c + 2) + 2 * h * (a + 1)
    return params


def build_task_model(spec: ModelSpec) -> nn.Module:
    """The model of ``spec``; refused before any allocation when it would pass ``MAX["params"]``."""
    check_params(model_params(spec))
    if spec.task == "classification" or spec.config.hosts_question:
        return build_model(spec.config)  # a family that reads the question is the whole VQA model
    vqa = spec.vqa or {}
    try:
        return VQAModel(
            build_model(spec.config),
            vocab_size=len(spec.vocab or ()),
            num_answers=len(spec.classes),
            embed_dim=int(vqa["embed_dim"]),
            hidden=int(vqa["hidden"]),
            dropout=float(vqa["dropout"]),
        )
    except (KeyError, TypeError) as err:
        raise ConfigError(f"model: bad VQA head sizes {vqa!r} ({err})") from None
