"""Models of the sparse ResNeXt family: configurations, seed layouts, the builder and a registry."""

from sparsearch.models.config import NetConfig, StageConfig, plan, with_knobs
from sparsearch.models.registry import build_model, create_model, layout, model_names, register_layout
from sparsearch.models.resnext import SparseResNeXt
from sparsearch.models.serialize import config_from_dict, config_to_dict
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
