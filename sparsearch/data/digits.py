"""scikit-learn's handwritten digits (1,797 grey 8×8 images, 10 classes), as 3-channel images.

The digits have no test split of their own: a fixed stratified 20% (seed 0, whatever the run's seed)
is the test split, and the validation split is carved from the rest with the run's seed.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from sparsearch.data.base import Datasets, Split
from sparsearch.data.images import resize_uint8
from sparsearch.data.split import stratified_split

__all__ = ["load_digits_data"]

TEST_FRACTION = 0.2


def load_digits_data(input_size: int, val_fraction: float, seed: int) -> Datasets:
    bunch = load_digits()
    grey = torch.from_numpy(bunch.images).float() * (255.0 / 16.0)  # values 0..16 -> 0..255
    images = resize_uint8(grey.round().to(torch.uint8)[:, None], input_size).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target).long()
    rest, test = stratified_split(labels, TEST_FRACTION, seed=0)
    train, val = stratified_split(labels[rest], val_fraction, seed)
    every = Split(images, labels)
    return Datasets(
        spec="digits",
        task="classification",
        train=every.subset(rest[train]),
        val=every.subset(rest[val]),
        test=every.subset(test),
        classes=tuple(str(c) for c in range(10)),
    )
