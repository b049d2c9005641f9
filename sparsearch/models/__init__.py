"""Modules of the sparse ResNeXt family, seed 001's CondConv networks and the VQA model, and a builder.

The configurations they are built from live in :mod:`sparsearch.config` (re-exported here).
"""

from sparsearch.config import (
    NetConfig,
    StageConfig,
    config_from_dict,
    config_to_dict,
    layout,
    model_names,
    plan,
    register_layout,
    with_knobs,
)
from sparsearch.models.registry import build_model, create_model
from sparsearch.models.resnext import SparseResNeXt
from sparsearch.models.vqa import VQAModel, create_vqa_model, soft_scores, vqa_accuracy, vqa_loss

__all__ = [
    "NetConfig",
    "SparseResNeXt",
    "StageConfig",
    "VQAModel",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "create_model",
    "create_vqa_model",
    "layout",
    "model_names",
    "plan",
    "register_layout",
    "soft_scores",
    "vqa_accuracy",
    "vqa_loss",
    "with_knobs",
]
