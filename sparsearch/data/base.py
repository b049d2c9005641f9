"""In-memory datasets: a split holds its tensors; batches are gathered by index, with no worker processes.

Every built-in dataset fits in memory (easy-VQA's 5,000 images are 61 MB as uint8), and on a 2-core
machine gathering rows from one tensor is faster than a ``DataLoader`` with workers. Images are kept as
uint8 and normalised per batch: ``(x / 255 - 0.5) / 0.25``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsearch.errors import ConfigError

__all__ = ["NORMALISATION", "TASKS", "Batch", "Datasets", "Split", "normalise"]

TASKS = ("classification", "vqa")


NORMALISATION = {"scale": 255.0, "mean": 0.5, "std": 0.25}  # images = (pixels / scale - mean) / std


def normalise(images: Tensor) -> Tensor:
    """uint8 (B, C, H, W) -> float32 roughly centred on 0 with unit spread."""
    n = NORMALISATION
    return (images.float() / n["scale"] - n["mean"]) / n["std"]


@dataclass(frozen=True)
class Batch:
    """One mini-batch: images, labels, and for VQA the question tokens and their lengths."""

    images: Tensor  # (B, C, H, W) float32, normalised
    labels: Tensor  # (B,) class or answer ids
    tokens: Tensor | None = None  # (B, T) token ids, right-padded with 0
    lengths: Tensor | None = None  # (B,) tokens per question

    def to(self, device: torch.device | str) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.images), move(self.labels), move(self.tokens), move(self.lengths))

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class Split:
    """Examples of one split. For VQA an example is a question; ``image_index`` maps it to its image."""

    images: Tensor  # (N_images, C, H, W) uint8
    labels: Tensor  # (N,) long
    image_index: Tensor | None = None  # (N,) long; None: example i is image i
    tokens: Tensor | None = None  # (N, T) long
    lengths: Tensor | None = None  # (N,) long
    groups: Tensor | None = None  # (N,) long: each example's group (a kind of question), see Datasets.groups

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ConfigError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        n = self.labels.shape[0]
        if self.image_index is None and self.images.shape[0] != n:
            raise ConfigError(f"{self.images.shape[0]} images but {n} labels")
        for name in ("image_index", "tokens", "lengths", "groups"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ConfigError(f"{name} has {value.shape[0]} rows but there are {n} labels")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, index: Tensor) -> Split:
        """The examples at ``index`` (images are shared, not copied, for VQA)."""

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        if self.image_index is None:
            return Split(self.images[index], self.labels[index], groups=rows(self.groups))
        return Split(
            self.images,
            self.labels[index],
            self.image_index[index],
            rows(self.tokens),
            rows(self.lengths),
            rows(self.groups),
        )

    def batch(self, index: Tensor) -> Batch:
        rows = index if self.image_index is None else self.image_index[index]
        images = normalise(self.images[rows])
        if self.tokens is None:
            return Batch(images, self.labels[index])
        return Batch(images, self.labels[index], self.tokens[index], self.lengths[index])

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Mini-batches in order, or in a random order drawn from ``generator``; the last may be short."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size])


@dataclass(frozen=True)
class Datasets:
    """What :func:`~sparsearch.data.load_data` returns: the splits and what a model needs to know."""

    spec: str  # the --data argument it came from
    task: str  # "classification" or "vqa"
    train: Split
    val: Split
    test: Split | None  # None where the source has no test split (plug-ins may omit it)
    classes: tuple[str, ...]  # class names or answers
    vocab: tuple[str, ...] | None = None  # VQA: token strings; id 0 is padding, 1 unknown
    groups: tuple[str, ...] | None = None  # names of the splits' example groups ("unary/shape", ...)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def input_size(self) -> int:
        return self.train.images.shape[-1]

    def split(self, name: str) -> Split:
        """``"train"``, ``"val"`` or ``"test"``."""
        if name == "test" and self.test is None:
            raise ConfigError(f"data {self.spec!r} has no test split; evaluate on the validation split: --split val")
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; allowed: train, val, test")
        return getattr(self, name)
