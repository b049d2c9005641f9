"""Seeded, stratified validation splits carved from training data (scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from torch import Tensor

from sparsearch.errors import ConfigError

__all__ = ["stratified_split"]


def stratified_split(labels: Tensor, fraction: float, seed: int, groups: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(train, val) example indices, each class in the same proportion on both sides.

    With ``groups`` (VQA: the image of each question), no group is split across the two sides, so no
    validation image is seen in training; the validation side is then about ``fraction`` of the
    examples (one fold of ``round(1 / fraction)`` stratified group folds).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction {fraction} must be between 0 and 1")
    y = labels.numpy()
    index = np.arange(len(y))
    try:
        if groups is None:
            counts = np.bincount(y)
            classes = int((counts > 0).sum())
            n_val = int(np.ceil(fraction * len(y)))
            # A class with one example, or a side smaller than the class count, cannot be stratified.
            can = counts[counts > 0].min() >= 2 and classes <= min(n_val, len(y) - n_val)
            train, val = train_test_split(index, test_size=fraction, stratify=y if can else None, random_state=seed)
        else:
            folds = max(2, round(1.0 / fraction))
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            train, val = next(splitter.split(index, y, groups.numpy()))
    except ValueError as err:  # too few examples (or images) for two sides
        raise ConfigError(
            f"cannot split {len(y):,} examples into training and validation sides ({str(err).splitlines()[0]})"
        ) from None
    return torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))
