"""The trained network of a configuration and a task, and the record that rebuilds it.

Classification: the configuration's network with a classifier head of the data's class count.
VQA: the configuration's network as the backbone (feature grid, gates conditioned on the question) of
:class:`~sparsearch.models.VQAModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from sparsearch.config import CondNetConfig, NetConfig, config_from_dict, config_to_dict
from sparsearch.errors import ConfigError
from sparsearch.models import SparseResNeXt, VQAModel, build_model

__all__ = ["ModelSpec", "build_task_model"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained model (stored in a checkpoint's config.json)."""

    task: str  # "classification" or "vqa"
    config: NetConfig | CondNetConfig  # the network (the VQA backbone for "vqa"), as built
    classes: tuple[str, ...]  # class names or answers
    vocab: tuple[str, ...] | None = None  # VQA question vocabulary
    vqa: dict[str, Any] | None = None  # VQA head sizes: hidden, embed_dim, dropout

    @classmethod
    def for_data(
        cls,
        config: NetConfig | CondNetConfig,
        task: str,
        classes: tuple[str, ...],
        in_channels: int,
        vocab: tuple[str, ...] | None = None,
        vqa: dict[str, Any] | None = None,
    ) -> ModelSpec:
        """Fit ``config`` to the data: its channels, its classes, its task."""
        if isinstance(config, CondNetConfig):
            if task != "classification":
                raise ConfigError(f"model {config.arch}: the CondConv networks classify; they cannot host {task}")
            if in_channels != 3:
                raise ConfigError(f"the CondConv networks take 3-channel images; the data has {in_channels}")
            return cls(task, replace(config, num_classes=len(classes)), classes)
        config = replace(config, in_channels=in_channels)
        if task == "classification":
            return cls(task, replace(config, head="classifier", num_classes=len(classes), cond_dim=None), classes)
        if vqa is None or vocab is None:
            raise ConfigError("a VQA model needs the vocabulary and the head sizes")
        head = "features" if config.head == "classifier" else config.head
        return cls(task, replace(config, head=head, cond_dim=vqa["hidden"]), classes, vocab, dict(vqa))

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
        return cls(
            data["task"],
            config_from_dict(data["config"]),
            tuple(data["classes"]),
            None if data["vocab"] is None else tuple(data["vocab"]),
            data["vqa"],
        )


def build_task_model(spec: ModelSpec) -> nn.Module:
    if spec.task == "classification":
        return build_model(spec.config)
    vqa = spec.vqa or {}
    try:
        return VQAModel(
            SparseResNeXt(spec.config),
            vocab_size=len(spec.vocab or ()),
            num_answers=len(spec.classes),
            embed_dim=int(vqa["embed_dim"]),
            hidden=int(vqa["hidden"]),
            dropout=float(vqa["dropout"]),
        )
    except (KeyError, TypeError) as err:
        raise ConfigError(f"model: bad VQA head sizes {vqa!r} ({err})") from None
