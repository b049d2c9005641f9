"""The named choices that settings accept, in one torch-free place: the settings check them, and the
command line offers them (``--help`` lists them; a value outside them is refused before anything runs).
"""

from __future__ import annotations

__all__ = [
    "CONNECTIVITIES",
    "EVAL_MODES",
    "EVAL_SPLITS",
    "EXPORT_FORMATS",
    "IMPORTANCES",
    "NETWORKS",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PRECISIONS",
    "SAMPLING_RULES",
]

OPTIMIZERS = ("sgd", "adamax", "adamw")
NETWORKS = ("proxy", "target")  # what `train` builds: the space's CPU proxy or its target
# GateConnect stages: learned gates, every gate on (the ResNeXt sum), or the fixed random baseline
CONNECTIVITIES = ("learned", "fixed_full", "fixed_random")
EVAL_SPLITS = ("test", "val")  # the splits `eval` reports on
IMPORTANCES = ("l1", "l2", "random")  # channel importance of `prune --channels` (torch-pruning)
EXPORT_FORMATS = ("pt2", "onnx")
EVAL_MODES = ("supernet", "train")  # how a study scores a trial
SAMPLING_RULES = ("sandwich", "uniform")  # how a supernet's training steps pick configurations
OBJECTIVES = ("flops", "latency")  # a study's second objective, minimised
PRECISIONS = ("32", "bf16", "fp16")  # arithmetic of training and evaluation: float32, or autocast to bfloat16/float16
