"""A tiny ResNeXt-family space on scikit-learn digits, fast enough for whole studies in tests."""

from __future__ import annotations

from pathlib import Path

from sparsearch.cost.budget import Budget
from sparsearch.spaces import parse_space
from sparsearch.study import StudySettings

TINY = """\
name: tiny
description: CLEVR modular CNN at 32x32, proxy on digits at 16x16
target: {model: clevr_cnn, input_size: 32}
proxy: {dataset: digits, input_size: 16, width: 0.5, depth: [1, 1, 1], epochs: 1, num_classes: 10}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {choices: [softmax, relu_l1]}
"""


def tiny_space():
    return parse_space(TINY, "tiny.yaml")


def write_tiny(directory: Path) -> Path:
    path = directory / "tiny.yaml"
    path.write_text(TINY)
    return path


def tiny_settings(budget: int, **overrides) -> StudySettings:
    space = tiny_space()
    base = dict(
        space=space.name,
        space_text=TINY,
        space_source="tiny.yaml",
        budget=Budget.flops(budget),
        trials=6,
        supernets=1,
        finetune_steps=2,
        finetune_top=2,
        score_examples=128,
    )
    return StudySettings(**{**base, **overrides})
