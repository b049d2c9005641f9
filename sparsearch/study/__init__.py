"""The study: Optuna search of a space under a FLOPs budget, with supernet or per-trial training."""

from sparsearch.study.pareto import Point, hypervolume, pareto_front
from sparsearch.study.progress import Progress
from sparsearch.study.runner import StudyRun, open_study, run_study, run_worker, summarize
from sparsearch.study.settings import StudySettings, default_study_name
from sparsearch.study.storage import default_storage_url, open_storage, redact
from sparsearch.study.validate import ValidationSettings, run_validation

__all__ = [
    "Point",
    "Progress",
    "StudyRun",
    "StudySettings",
    "ValidationSettings",
    "default_storage_url",
    "default_study_name",
    "hypervolume",
    "open_storage",
    "open_study",
    "pareto_front",
    "redact",
    "run_study",
    "run_validation",
    "run_worker",
    "summarize",
]
