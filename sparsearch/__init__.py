"""sparsearch: search and compress conditionally-computed neural networks.

The public entry points, each the function a command of the same job calls (docs/python.md shows them
in use); they load on first use, so ``import sparsearch`` stays light:

- spaces and costs: :func:`get_space`, :func:`load_space`, :func:`count`, :func:`parse_budget`;
- studies: :func:`make_settings`, :func:`run_study`, :func:`run_worker`, :func:`run_validation`,
  :func:`load_report_data`, :func:`write_report`;
- training: :func:`default_settings`, :func:`train_space`, :func:`load_checkpoint`, :func:`evaluate_checkpoint`;
- compaction and deployment: :class:`PruneSettings`, :func:`prune_checkpoint`, :func:`export_checkpoint`;
- your own network: :func:`convert_bottlenecks`, :func:`from_torchvision`;
- errors: :class:`SparsearchError` (every refusal of bad input is one, with a one-line message).
"""

from typing import Any

from sparsearch.errors import SparsearchError
from sparsearch.version import __version__

__all__ = [
    "PruneSettings",
    "SparsearchError",
    "__version__",
    "convert_bottlenecks",
    "count",
    "default_settings",
    "evaluate_checkpoint",
    "export_checkpoint",
    "from_torchvision",
    "get_space",
    "load_checkpoint",
    "load_report_data",
    "load_space",
    "make_settings",
    "parse_budget",
    "prune_checkpoint",
    "run_study",
    "run_validation",
    "run_worker",
    "train_space",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """The public entry points, imported on first use (PEP 562). These re-exports are the one place the root
    package reaches the packages above it (tests/test_architecture.py allows them here only)."""
    if name in ("get_space", "load_space"):
        from sparsearch import spaces as module
    elif name in ("count", "parse_budget"):
        from sparsearch import cost as module
    elif name in ("make_settings", "run_study", "run_worker", "run_validation"):
        from sparsearch import study as module
    elif name in ("load_report_data", "write_report"):
        from sparsearch import report as module
    elif name in ("default_settings", "train_space", "load_checkpoint", "evaluate_checkpoint"):
        from sparsearch import train as module
    elif name in ("PruneSettings", "prune_checkpoint"):
        from sparsearch.compact import prune as module
    elif name == "export_checkpoint":
        from sparsearch.compact import export as module
    elif name in ("convert_bottlenecks", "from_torchvision"):
        from sparsearch.models import convert as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
