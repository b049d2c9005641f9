"""CIFAR-10/100 in the "python version" directory layout users already have on disk.

CIFAR-10: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``;
CIFAR-100: ``train``, ``test``, ``meta`` (fine labels). The files are pickles of numpy arrays; they are
read with an unpickler that accepts numpy arrays and plain containers only, so a file that would run
code is refused before anything runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsearch.data.base import Datasets, Split
from sparsearch.data.images import resize_uint8
from sparsearch.data.split import stratified_split
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX

__all__ = ["load_cifar"]

_LAYOUT = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", "labels", "label_names"),
    "cifar100": (["train"], "test", "meta", "fine_labels", "fine_label_names"),
}
MAX_CIFAR_FILE_BYTES = 512 << 20  # CIFAR-100's training file is 155 MB

# What a CIFAR pickle may reference: numpy's array reconstruction (and _codecs.encode, which pickles
# written by Python 3 use for the arrays' bytes), nothing else.
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR file never needs")
        return super().find_class(module, name)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing (expected the CIFAR python-format files here)")
    size = path.stat().st_size
    if size > MAX_CIFAR_FILE_BYTES:
        raise ConfigError(f"{path}: larger than the {MAX_CIFAR_FILE_BYTES:,}-byte cap of a CIFAR file")
    try:
        raw = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means "not a CIFAR file"
        raise ConfigError(f"{path}: not a CIFAR python-format file ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a CIFAR python-format file (expected a dict, got {type(raw).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    entry = _read(path)
    if "data" not in entry or label_key not in entry:
        raise ConfigError(f"{path}: not a CIFAR python-format file (no 'data' or {label_key!r})")
    data, labels = entry["data"], entry[label_key]
    # Check the types and lengths before converting anything: a list of shared references would
    # otherwise become gigabytes of copies in np.asarray.
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ConfigError(f"{path}: 'data' must be a uint8 array, got {type(data).__name__}")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise ConfigError(f"{path}: expected one label per image, got {type(labels).__name__}")
    if isinstance(labels, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise ConfigError(f"{path}: labels must be integers")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= MAX["classes"]):
        raise ConfigError(f"{path}: labels must be class ids in 0..{MAX['classes'] - 1:,}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ConfigError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape}, {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(name: str, root: str, input_size: int, val_fraction: float, seed: int) -> Datasets:
    directory = Path(root).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"data {name}:{root}: no such directory")
    train_files, test_file, meta_file, label_key, names_key = _LAYOUT[name]
    parts = [_batch(directory / f, label_key) for f in train_files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    test_images, test_labels = _batch(directory / test_file, label_key)
    meta = _read(directory / meta_file)
    names = meta.get(names_key, [])
    if not isinstance(names, list) or len(names) > MAX["classes"]:
        raise ConfigError(f"{directory / meta_file}: {names_key!r} must be a list of at most {MAX['classes']:,} names")
    classes = tuple(n.decode(errors="replace") if isinstance(n, bytes) else str(n)[:200] for n in names)
    count = int(max(labels.max(), test_labels.max())) + 1
    if len(classes) < count:
        raise ConfigError(f"{directory / meta_file}: {len(classes)} class names for {count} classes")
    train, val = stratified_split(labels, val_fraction, seed)
    every = Split(resize_uint8(images, input_size), labels)
    return Datasets(
        spec=f"{name}:{root}",
        task="classification",
        train=every.subset(train),
        val=every.subset(val),
        test=Split(resize_uint8(torch.from_numpy(test_images), input_size), torch.from_numpy(test_labels)),
        classes=classes,
    )
