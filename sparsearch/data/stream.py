"""Splits read from disk as they are used: a ``torch.utils.data.Dataset`` behind a ``DataLoader``.

A :class:`StreamSplit` holds no images. Each batch is read by the DataLoader (in ``workers`` worker
processes, into pinned memory on CUDA), so memory does not grow with the data set. The batch order is
drawn in the main process from the caller's generator (:func:`~sparsearch.data.base.batch_indices`),
the same draw as the in-memory :class:`~sparsearch.data.base.Split`, whatever the number of workers;
a resumed run skips the batches already trained without reading them.

An item of the dataset is ``(image, label)``, or for VQA ``(image, tokens, label)`` with ``tokens`` a 1-D
LongTensor of token ids (right-padding to the batch's longest question happens here). Images are
(C, H, W), uint8 or floating point in 0..1, resized to the split's size when they differ. A dataset whose
``takes_seed`` attribute is true is indexed with ``(index, seed)`` pairs: a per-item seed drawn from the
batch order's generator, so random augmentation is reproducible whichever worker reads the item.

An ``IterableDataset`` (with ``__len__``: the examples per pass) streams in its own order, read in the
main process (in N workers each would yield the whole stream unless it split itself between them); it is
read whole by every process of a ``torchrun`` job, each keeping its share of every global batch, and
cannot be shuffled, subset or indexed by sparsearch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from sparsearch.data.base import Batch, Reading, batch_indices, normalise
from sparsearch.data.images import as_uint8, resize_uint8
from sparsearch.errors import ConfigError

__all__ = ["StreamSplit", "item_image"]

SEED_RANGE = 2**31 - 1


def item_image(image: Any, size: int, where: str) -> Tensor:
    """An item's image as uint8 (C, size, size)."""
    if not isinstance(image, Tensor):
        if not hasattr(image, "__array__"):
            raise ConfigError(f"{where}: an image must be a tensor or an array, got {type(image).__name__}")
        import numpy as np

        image = torch.as_tensor(np.asarray(image))
    if image.dim() != 3:
        raise ConfigError(f"{where}: an image must be (C, H, W), got shape {tuple(image.shape)}")
    image = as_uint8(image, where)
    if image.shape[-2:] != (size, size):
        image = resize_uint8(image[None], size)[0]
    return image


@dataclass(frozen=True)
class _Collate:
    """Items -> (uint8 images, labels, tokens, lengths); runs in the worker processes (picklable)."""

    size: int
    channels: int
    vqa: bool
    where: str

    def __call__(self, items: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        width = 3 if self.vqa else 2
        if not all(isinstance(it, tuple | list) and len(it) == width for it in items):
            shape = "(image, tokens, label)" if self.vqa else "(image, label)"
            raise ConfigError(f"{self.where}: every item must be a pair {shape}")
        images = torch.stack([item_image(it[0], self.size, self.where) for it in items])
        if images.shape[1] != self.channels:
            raise ConfigError(f"{self.where}: an image has {images.shape[1]} channels, the split {self.channels}")
        try:
            labels = torch.tensor([int(it[-1]) for it in items], dtype=torch.long)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.where}: labels must be integer class ids") from None
        if int(labels.min()) < 0:
            raise ConfigError(f"{self.where}: labels must be integer class ids from 0")
        if not self.vqa:
            return images, labels, None, None
        rows = [torch.as_tensor(it[1], dtype=torch.long).reshape(-1) for it in items]
        lengths = torch.tensor([max(len(r), 1) for r in rows], dtype=torch.long)
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r if len(r) else 1  # an empty question reads as unknown
        return images, labels, tokens, lengths


class _Batches(Sampler):
    """The batch sampler: lists of indices (or (index, seed) pairs) drawn in the main process."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator, reading: Reading, seeded: bool) -> None:
        self.args = (n, batch_size, shuffle, generator, reading)
        self.seeded, self.generator = seeded, generator

    def __iter__(self) -> Iterator[list]:
        salt = 0
        if self.seeded:  # one draw per pass: the augmentation differs pass to pass, the same in every process
            salt = int(torch.randint(SEED_RANGE, (1,), generator=self.generator)) if self.generator else 0
        for index in batch_indices(*self.args):
            rows = index.tolist()
            yield [(i, (salt * 1_000_003 + i) % SEED_RANGE) for i in rows] if self.seeded else rows

    def __len__(self) -> int:
        n, batch_size, *_ = self.args
        return -(-n // batch_size)


class StreamSplit:
    """Examples of one split read from a ``Dataset`` as they are used; the interface of
    :class:`~sparsearch.data.base.Split`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        size: int,
        channels: int,
        vqa: bool = False,
        where: str = "data",
        labels: Tensor | None = None,
        groups: Tensor | None = None,
    ) -> None:
        if not hasattr(dataset, "__len__"):
            raise ConfigError(f"{where}: a streamed dataset must define __len__ (its examples per pass)")
        n = len(dataset)
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}: a dataset needs at least one example, got len {n!r}")
        self.dataset, self.where = dataset, where
        self._size, self._channels, self.vqa = size, channels, vqa
        self._labels, self.groups = labels, groups
        self.iterable = isinstance(dataset, IterableDataset)
        self.collate = _Collate(size, channels, vqa, where)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def size(self) -> int:
        return self._size

    def max_label(self) -> int:
        """The largest label (the labels the reader gave, or one pass over the dataset reading them)."""
        if self._labels is not None:
            return int(self._labels.max())
        return max(int(labels.max()) for _, labels, _, _ in self._loader(256, False, None, Reading()))

    @property
    def takes_seed(self) -> bool:
        return bool(getattr(self.dataset, "takes_seed", False))

    def _loader(self, batch_size: int, shuffle: bool, generator, reading: Reading) -> Iterator[tuple]:
        options: dict[str, Any] = {
            "num_workers": reading.workers,
            "pin_memory": reading.pin_memory,
            "collate_fn": self.collate,
        }
        if reading.workers:
            options["worker_init_fn"] = _worker_init
        if self.iterable:  # read here: in N workers each would yield the whole stream, unless it split itself
            options.update(num_workers=0, worker_init_fn=None)
            loader = DataLoader(self.dataset, batch_size=batch_size, **options)
            for i, (images, labels, tokens, lengths) in enumerate(self._read(loader)):
                if i < reading.start:
                    continue
                if reading.world > 1:
                    if len(labels) < reading.world:
                        continue
                    part = lambda t: None if t is None else t.tensor_split(reading.world)[reading.rank]  # noqa: E731
                    images, labels, tokens, lengths = part(images), part(labels), part(tokens), part(lengths)
                yield images, labels, tokens, lengths
            return
        sampler = _Batches(len(self), batch_size, shuffle, generator, reading, self.takes_seed)
        yield from self._read(DataLoader(self.dataset, batch_sampler=sampler, **options))

    def _read(self, loader) -> Iterator[tuple]:
        """The loader's batches; a failure in a worker process (which DataLoader re-raises with the
        worker's traceback in its message) as one line."""
        try:
            yield from loader
        except ConfigError as err:  # its message as given: str() would write the traceback's newlines as escapes
            raise ConfigError(_last_line(str(err.args[0]) if err.args else str(err))) from None
        except (RuntimeError, OSError, ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
            raise ConfigError(f"{self.where}: reading a batch failed ({_last_line(str(err))})") from None

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        reading: Reading | None = None,
    ) -> Iterator[Batch]:
        """Mini-batches as :meth:`Split.batches <sparsearch.data.base.Split.batches>` gives them."""
        for images, labels, tokens, lengths in self._loader(batch_size, shuffle, generator, reading or Reading()):
            yield Batch(normalise(images), labels, tokens, lengths)

    def _refuse_iterable(self, what: str) -> None:
        if self.iterable:
            raise ConfigError(f"{self.where}: an IterableDataset cannot be {what}; give a map-style Dataset")

    def batch(self, index: Tensor) -> Batch:
        """The examples at ``index``, read now."""
        self._refuse_iterable("indexed")
        keys = index.tolist()
        items = [self.dataset[(i, i) if self.takes_seed else i] for i in keys]
        images, labels, tokens, lengths = self.collate(items)
        return Batch(normalise(images), labels, tokens, lengths)

    def subset(self, index: Tensor) -> StreamSplit:
        self._refuse_iterable("subset")
        rows = index.tolist()
        labels = None if self._labels is None else self._labels[index]
        groups = None if self.groups is None else self.groups[index]
        return StreamSplit(
            _Rows(self.dataset, rows),
            size=self._size,
            channels=self._channels,
            vqa=self.vqa,
            where=self.where,
            labels=labels,
            groups=groups,
        )

    def first(self) -> Any:
        """The first item (to check a dataset's items before training on it)."""
        if self.iterable:
            return next(itertools.islice(iter(self.dataset), 1), None)
        return self.dataset[(0, 0) if self.takes_seed else 0]


class _Rows(Dataset):
    """The rows ``rows`` of a map-style dataset (``torch.utils.data.Subset``, passing seeds through)."""

    def __init__(self, dataset: Dataset, rows: list[int]) -> None:
        self.dataset, self.rows = dataset, rows
        self.takes_seed = bool(getattr(dataset, "takes_seed", False))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.dataset[(self.rows[key[0]], key[1])]
        return self.dataset[self.rows[key]]


def _last_line(message: str) -> str:
    """The error itself, without a worker's traceback: the last line, less its exception type."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else message
    head, sep, rest = last.partition(": ")
    return rest if sep and head.replace(".", "").isidentifier() and head[:1].isupper() else last


def _worker_init(worker_id: int) -> None:
    """One thread per worker: the workers' decoding and the training share the cores."""
    torch.set_num_threads(1)
