"""The study: Optuna search of a space under a FLOPs budget, with supernet or per-trial training.

The names below load with their module on first use, so that importing a light module of this package
(the sampler names, the settings) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SAMPLERS",
    "OpenStudy",
    "Point",
    "Progress",
    "StudyRun",
    "StudySettings",
    "ValidationSettings",
    "default_storage_url",
    "default_study_name",
    "hypervolume",
    "make_settings",
    "open_storage",
    "open_study",
    "pareto_front",
    "redact",
    "run_study",
    "run_validation",
    "run_worker",
    "summarize",
]


def __getattr__(name: str) -> Any:
    if name == "SAMPLERS":
        from sparsearch.study import samplers as module
    elif name in ("OpenStudy", "open_study"):
        from sparsearch.study import session as module
    elif name in ("Point", "hypervolume", "pareto_front"):
        from sparsearch.study import pareto as module
    elif name == "Progress":
        from sparsearch.study import progress as module
    elif name in ("StudyRun", "run_study"):
        from sparsearch.study import runner as module
    elif name in ("StudySettings", "default_study_name", "make_settings"):
        from sparsearch.study import settings as module
    elif name in ("ValidationSettings", "run_validation"):
        from sparsearch.study import validate as module
    elif name in ("default_storage_url", "open_storage", "redact"):
        from sparsearch.study import storage as module
    elif name == "run_worker":
        from sparsearch.study import queue as module
    elif name == "summarize":
        from sparsearch.study import summary as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
