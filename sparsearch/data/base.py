"""In-memory datasets: a split holds its tensors; batches are gathered by index, with no worker processes.
(Data too large for memory streams from disk instead: :mod:`sparsearch.data.stream`.)

Every built-in dataset fits in memory (easy-VQA's 5,000 images are 61 MB as uint8), and on a 2-core
machine gathering rows from one tensor is faster than a ``DataLoader`` with workers. Images are kept as
uint8 and normalised per batch: ``(x / 255 - 0.5) / 0.25``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sparsearch.errors import ConfigError

if TYPE_CHECKING:
    from sparsearch.data.stream import StreamSplit

__all__ = ["NORMALISATION", "TASKS", "Batch", "Datasets", "Reading", "Split", "batch_indices", "normalise"]

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
class Reading:
    """How a split's batches are read: this process's share of each global batch (``rank`` of ``world``
    processes), the global batch to start from (a resumed run), and for data on disk the DataLoader's
    worker processes and pinned memory."""

    rank: int = 0
    world: int = 1
    start: int = 0
    workers: int = 0
    pin_memory: bool = False


def batch_indices(
    n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None, reading: Reading
) -> Iterator[Tensor]:
    """Example indices of each batch of this process: the global order (shuffled by ``generator``, the
    same draw in every process), cut into global batches of ``batch_size``, each split in ``world``
    near-equal shares of which this process takes share ``rank``. A last global batch smaller than the
    processes is dropped (no process may be left without examples); batches before ``start`` are
    skipped without being read (the generator is drawn all the same)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i, first in enumerate(range(0, n, batch_size)):
        if i < reading.start:
            continue
        chunk = order[first : first + batch_size]
        if reading.world == 1:
            yield chunk
        elif len(chunk) >= reading.world:
            yield chunk.tensor_split(reading.world)[reading.rank]


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

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        """Height and width of its images."""
        return self.images.shape[-1]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        reading: Reading | None = None,
    ) -> Iterator[Batch]:
        """Mini-batches in order, or in a random order drawn from ``generator``; the last may be short.
        ``reading``: this process's share, where to start (worker processes do not apply in memory)."""
        for index in batch_indices(len(self), batch_size, shuffle, generator, reading or Reading()):
            yield self.batch(index)


@dataclass(frozen=True)
class Datasets:
    """What :func:`~sparsearch.data.load_data` returns: the splits and what a model needs to know."""

    spec: str  # the --data argument it came from
    task: str  # "classification" or "vqa"
    train: Split | StreamSplit
    val: Split | StreamSplit
    test: Split | StreamSplit | None  # None where the source has no test split (plug-ins may omit it)
    classes: tuple[str, ...]  # class names or answers
    vocab: tuple[str, ...] | None = None  # VQA: token strings; id 0 is padding, 1 unknown
    groups: tuple[str, ...] | None = None  # names of the splits' example groups ("unary/shape", ...)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.channels

    @property
    def input_size(self) -> int:
        return self.train.size

    def split(self, name: str) -> Split | StreamSplit:
        """``"train"``, ``"val"`` or ``"test"``."""
        if name == "test" and self.test is None:
            raise ConfigError(f"data {self.spec!r} has no test split; evaluate on the validation split: --split val")
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; allowed: train, val, test")
        return getattr(self, name)
