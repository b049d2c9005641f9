"""The configuration core: configurations, shape plans, layouts and name tables, without torch.

``cost/`` and ``spaces/`` stand on this package alone, so counting a configuration or listing the
spaces never imports torch; ``layers/`` and ``models/`` build modules from what is described here.
"""

from sparsearch.config.condnet import ARCHS, CondNetConfig, ConvSpec, LayerSpec, condnet_plan
from sparsearch.config.family import (
    ELASTIC,
    KNOB_TABLE,
    KNOB_TYPES,
    KNOBS,
    KnobUnit,
    NetworkFamily,
    TaskFit,
    family_class,
    family_names,
    register_family,
)
from sparsearch.config.layouts import layout, layout_arguments, layout_doc, model_names, register_layout
from sparsearch.config.relation import RELATION_HEADS, RelationNetConfig
from sparsearch.config.resnext import HEADS, BlockPlan, NetConfig, Plan, StageConfig, plan, with_knobs
from sparsearch.config.routing import HIDDEN_SIZES, declare_routing, routing_names
from sparsearch.config.serialize import config_from_dict, config_to_dict
from sparsearch.config.user import UserBlock, UserNetConfig, UserStage, is_trusted, trust_factory

__all__ = [
    "ARCHS",
    "ELASTIC",
    "HEADS",
    "HIDDEN_SIZES",
    "KNOBS",
    "KNOB_TABLE",
    "KNOB_TYPES",
    "RELATION_HEADS",
    "BlockPlan",
    "CondNetConfig",
    "ConvSpec",
    "KnobUnit",
    "LayerSpec",
    "NetConfig",
    "NetworkFamily",
    "Plan",
    "RelationNetConfig",
    "StageConfig",
    "TaskFit",
    "UserBlock",
    "UserNetConfig",
    "UserStage",
    "condnet_plan",
    "config_from_dict",
    "config_to_dict",
    "declare_routing",
    "family_class",
    "family_names",
    "is_trusted",
    "layout",
    "layout_arguments",
    "layout_doc",
    "model_names",
    "plan",
    "register_family",
    "register_layout",
    "routing_names",
    "trust_factory",
    "with_knobs",
]
