"""Models of the sparse ResNeXt family: configurations, seed layouts, the builder and a registry."""

from sparsearch.models.config import NetConfig, StageConfig, plan, with_knobs
from sparsearch.models.registry import create_model, layout, model_names, register_layout
from sparsearch.models.resnext import SparseResNeXt

__all__ = [
    "NetConfig",
    "SparseResNeXt",
    "StageConfig",
    "create_model",
    "layout",
    "model_names",
    "plan",
    "register_layout",
    "with_knobs",
]
