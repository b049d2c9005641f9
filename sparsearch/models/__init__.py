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
from sparsearch.models.condconv_nets import CondNet
from sparsearch.models.network import Network, find_network
from sparsearch.models.registry import build_model, create_model, fit_config, register_builder
from sparsearch.models.relation import RelationNetwork
from sparsearch.models.resnext import SparseResNeXt
from sparsearch.models.user import UserNetwork
from sparsearch.models.vqa import VQAModel, create_vqa_model, soft_scores, vqa_accuracy, vqa_loss

__all__ = [
    "CondNet",
    "NetConfig",
    "Network",
    "RelationNetwork",
    "SparseResNeXt",
    "StageConfig",
    "UserNetwork",
    "VQAModel",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "create_model",
    "create_vqa_model",
    "find_network",
    "fit_config",
    "layout",
    "model_names",
    "plan",
    "register_builder",
    "register_layout",
    "soft_scores",
    "vqa_accuracy",
    "vqa_loss",
    "with_knobs",
]
