"""Conditional-computation layers: nn.Modules only; nothing else of sparsearch is imported here."""

from sparsearch.layers.balance import cv_squared
from sparsearch.layers.condconv import CondConv2d, CondLinear
from sparsearch.layers.controllers import Gates, ImageGate, QuestionGate, select_top_k
from sparsearch.layers.gateconnect import GateConnectModule, clip_gates_, split_gate_parameters
from sparsearch.layers.routing import Routing, RoutingOutput, create_routing, register_routing, routing_names
from sparsearch.layers.topk import TopKBottleneck

__all__ = [
    "CondConv2d",
    "CondLinear",
    "GateConnectModule",
    "Gates",
    "ImageGate",
    "QuestionGate",
    "Routing",
    "RoutingOutput",
    "TopKBottleneck",
    "clip_gates_",
    "create_routing",
    "cv_squared",
    "register_routing",
    "routing_names",
    "select_top_k",
    "split_gate_parameters",
]
