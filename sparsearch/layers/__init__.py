"""Conditional-computation layers: nn.Modules only; of sparsearch they import only the config core."""

from sparsearch.layers.balance import cv_squared
from sparsearch.layers.branches import BranchModule, BranchTrunk, slice_bn
from sparsearch.layers.condconv import CondConv2d, CondLinear
from sparsearch.layers.controllers import Gates, ImageGate, QuestionGate, select_top_k
from sparsearch.layers.fused_topk import FusedTopKBottleneck
from sparsearch.layers.gateconnect import GateConnectModule, clip_gates_, split_gate_parameters
from sparsearch.layers.routing import (
    Routing,
    RoutingOutput,
    SelectedRouting,
    create_routing,
    register_routing,
    routing_names,
)
from sparsearch.layers.topk import TopKBottleneck

__all__ = [
    "BranchModule",
    "BranchTrunk",
    "CondConv2d",
    "CondLinear",
    "FusedTopKBottleneck",
    "GateConnectModule",
    "Gates",
    "ImageGate",
    "QuestionGate",
    "Routing",
    "RoutingOutput",
    "SelectedRouting",
    "TopKBottleneck",
    "clip_gates_",
    "create_routing",
    "cv_squared",
    "register_routing",
    "routing_names",
    "select_top_k",
    "slice_bn",
    "split_gate_parameters",
]
