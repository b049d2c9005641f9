"""User data plug-ins: ``--data mypkg.mymod:make_datasets``.

The contract: ``make_datasets(input_size: int, seed: int)`` returns ``(train, val)`` or
``(train, val, test)``. Each split is either a pair of tensors (or numpy arrays) ``(images, labels)``, kept in
memory, or a ``torch.utils.data.Dataset`` whose items are ``(image, label)`` pairs, streamed: read batch by
batch through a ``DataLoader`` (``--workers`` processes), never whole (:mod:`sparsearch.data.stream`). A
training Dataset with a ``classes`` attribute (names, as torchvision's ``ImageFolder`` has) gives the class
names; otherwise the labels are read once to count the classes. Images are (C, H, W), uint8 in
0..255 or floating point in 0..1; labels are integer class ids from 0. Images of another size are
resized to ``input_size``. The plug-in runs only because the user named it on the command line; its
module is found on ``PYTHONPATH`` or in the current directory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sparsearch.data.base import Datasets, Split
from sparsearch.data.images import as_uint8, resize_uint8
from sparsearch.data.stream import StreamSplit, item_image
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX
from sparsearch.user_code import call_user_function

__all__ = ["load_plugin"]


def _tensor(value: Any) -> Any:
    """A numpy array (or anything with ``__array__``) as a tensor; anything else as it is."""
    if not isinstance(value, Tensor) and hasattr(value, "__array__"):
        import numpy as np

        return torch.as_tensor(np.asarray(value))
    return value


def _split(value: Any, where: str, input_size: int) -> Split | StreamSplit:
    if isinstance(value, tuple | list) and len(value) == 2:
        value = tuple(_tensor(v) for v in value)  # numpy arrays are as good as tensors
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, Tensor) for v in value):
        images, labels = value
    elif isinstance(value, torch.utils.data.Dataset):
        return _stream(value, where, input_size)
    else:
        raise ConfigError(f"{where}: expected (images, labels) tensors or a Dataset, got {type(value).__name__}")
    if images.dim() == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] > 4:
        raise ConfigError(
            f"{where}: images of shape {tuple(images.shape)} look channels-last (N, H, W, C); give (N, C, H, W), "
            "e.g. images.permute(0, 3, 1, 2)"
        )
    if images.dim() != 4 or labels.dim() != 1 or len(images) != len(labels) or len(labels) == 0:
        raise ConfigError(
            f"{where}: expected images (N, C, H, W) and labels (N,), "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool or int(labels.min()) < 0:
        raise ConfigError(f"{where}: labels must be integer class ids from 0")
    if int(labels.max()) >= MAX["classes"]:  # the class table is built from the largest label
        raise ConfigError(
            f"{where}: label {int(labels.max()):,} is beyond the {MAX['classes']:,} classes a data set may have"
        )
    return Split(resize_uint8(as_uint8(images, where), input_size), labels.long())


def _stream(dataset: torch.utils.data.Dataset, where: str, input_size: int) -> StreamSplit:
    """A Dataset, streamed (never read whole into memory); its first item checked now."""
    if not hasattr(dataset, "__len__"):
        raise ConfigError(f"{where}: a Dataset must define __len__ (its examples per pass)")
    try:
        size = len(dataset)
    except Exception as err:
        raise ConfigError(f"{where}: len() of the dataset failed ({type(err).__name__}: {err})") from None
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"{where}: a dataset needs at least one example, got len {size!r}")
    probe = StreamSplit(dataset, size=input_size, channels=1, where=where)
    try:
        item = probe.first()
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{where}: reading its first item failed ({type(err).__name__}: {err})") from None
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise ConfigError(f"{where}: a dataset must yield (image, label) pairs")
    image = item_image(item[0], input_size, where)
    return StreamSplit(dataset, size=input_size, channels=image.shape[0], where=where)


def _classes(split: Split | StreamSplit) -> int:
    """Classes a split's labels need: one more than the largest."""
    if isinstance(split, StreamSplit):
        try:
            return split.max_label() + 1
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"{split.where}: reading its labels failed ({type(err).__name__}: {err})") from None
    return int(split.labels.max()) + 1


def load_plugin(spec: str, input_size: int, seed: int) -> Datasets:
    contract = "make_datasets(input_size, seed) -> (train, val) or (train, val, test)"
    result = call_user_function(spec, "data plug-in", contract, input_size=input_size, seed=seed)
    if not isinstance(result, tuple | list) or len(result) not in (2, 3):
        raise ConfigError(f"data plug-in {spec!r}: must return (train, val) or (train, val, test)")
    splits = [
        _split(part, f"data plug-in {spec!r}, {name}", input_size)
        for part, name in zip(result, ("train", "val", "test"), strict=False)
    ]
    channels = {s.channels for s in splits}
    if len(channels) != 1:
        raise ConfigError(f"data plug-in {spec!r}: splits have different channel counts {sorted(channels)}")
    declared = getattr(result[0], "classes", None)  # as torchvision's ImageFolder names them
    if isinstance(declared, list | tuple) and declared and all(isinstance(c, str) for c in declared):
        classes = tuple(declared)
    else:
        count = max(_classes(s) for s in splits)
        if count > MAX["classes"]:
            raise ConfigError(f"data plug-in {spec!r}: {count:,} classes; at most {MAX['classes']:,}")
        classes = tuple(str(c) for c in range(count))
    return Datasets(
        spec=spec,
        task="classification",
        train=splits[0],
        val=splits[1],
        test=splits[2] if len(splits) == 3 else None,
        classes=classes,
    )
