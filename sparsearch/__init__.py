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

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sparsearch.errors import SparsearchError

try:
    __version__ = version("sparsearch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it
_ENTRY_POINTS = {
    "get_space": "sparsearch.spaces",
    "load_space": "sparsearch.spaces",
    "count": "sparsearch.cost",
    "parse_budget": "sparsearch.cost",
    "make_settings": "sparsearch.study",
    "run_study": "sparsearch.study",
    "run_worker": "sparsearch.study",
    "run_validation": "sparsearch.study",
    "load_report_data": "sparsearch.report",
    "write_report": "sparsearch.report",
    "default_settings": "sparsearch.train",
    "train_space": "sparsearch.train",
    "load_checkpoint": "sparsearch.train",
    "evaluate_checkpoint": "sparsearch.train",
    "PruneSettings": "sparsearch.compact.prune",
    "prune_checkpoint": "sparsearch.compact.prune",
    "export_checkpoint": "sparsearch.compact.export",
    "convert_bottlenecks": "sparsearch.models.convert",
    "from_torchvision": "sparsearch.models.convert",
}

__all__ = ["SparsearchError", "__version__", *_ENTRY_POINTS]


def __getattr__(name: str) -> Any:
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_ENTRY_POINTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
