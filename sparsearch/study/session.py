"""Opening a study: create it with its settings and queued reference trials, or resume it unchanged.

The settings travel in the study's user attributes, with the space's YAML; :func:`open_study` parses
that space once and hands it on with the study, its settings and the storage it opened.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, NamedTuple

import optuna
from optuna.storages import RDBStorage

from sparsearch.errors import ConfigError
from sparsearch.spaces import Space
from sparsearch.spaces.registry import stored_space
from sparsearch.study.evaluators import evaluator_class
from sparsearch.study.samplers import make_sampler
from sparsearch.study.settings import StudySettings
from sparsearch.study.storage import (
    HEARTBEAT_SECONDS,
    check_study_name,
    open_storage,
    optuna_logging,
    redact,
    require_study,
)
from sparsearch.study.structure import references

__all__ = ["ATTR", "RUN_OPTIONS", "OpenStudy", "metric_names", "open_study", "study_settings"]

ATTR = "sparsearch"  # study user attribute holding the StudySettings
CREATED = "created"  # ... and the time of creation, written last: a study without it is half made
# Options a re-run of a study may change; any other difference is a different study.
RUN_OPTIONS = ("trials", "finetune_steps", "finetune_top", "target_latency_batches")


class OpenStudy(NamedTuple):
    """A study with what it was made from: its settings, its space (parsed once) and its storage."""

    study: optuna.Study
    settings: StudySettings
    space: Space
    storage: RDBStorage


def metric_names(settings: StudySettings) -> list[str]:
    """The two objectives' names, as Optuna and optuna-dashboard show them (instead of "Objective 0/1")."""
    cost = "target latency (ms)" if settings.objective == "latency" else "target FLOPs"
    return ["proxy accuracy", cost]


def _name_metrics(study: optuna.Study, settings: StudySettings) -> None:
    with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2; its storage is plain
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(settings))


def _half_made(study: optuna.Study) -> bool:
    """A study whose creation stopped midway (a storage that failed, a process killed): sparsearch's
    settings without the ``created`` stamp written last, or an empty study with no attribute or trial at
    all. Another tool's study (with attributes or trials of its own) is never taken for one."""
    attrs = study.user_attrs
    if ATTR in attrs:
        return CREATED not in attrs
    return not attrs and not study.get_trials(deepcopy=False)


def study_settings(study: optuna.Study) -> StudySettings:
    data = study.user_attrs.get(ATTR)
    if not isinstance(data, dict):
        raise ConfigError(f"study {study.study_name} was not created by sparsearch (no {ATTR!r} attribute)")
    return StudySettings.from_dict(data)


def open_study(
    storage_url: str,
    name: str,
    settings: StudySettings | None,
    *,
    space: Space | None = None,
    heartbeat_s: int = HEARTBEAT_SECONDS,
    read_only: bool = False,
) -> OpenStudy:
    """Load study ``name``, or create it from ``settings`` (None: it must exist, as for a worker).

    A study that exists must have been created with the same settings, but for :data:`RUN_OPTIONS`.
    ``space``: the space of ``settings`` when the caller has parsed it already. ``read_only`` (with
    ``settings`` None): the storage refuses writes and its files are left as they were.
    """
    check_study_name(name)
    if read_only and settings is not None:
        raise ValueError("a study opened read-only is never created")
    if settings is None:  # only `study` creates; the others find the study first, changing nothing
        require_study(storage_url, name)
    storage = open_storage(storage_url, heartbeat_s, read_only=read_only)
    optuna_logging()
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None and _half_made(existing):
        if settings is None:
            raise ConfigError(
                f"study {name!r} in {redact(storage_url)} is half made (being made now, or its making failed); "
                "run the same `sparsearch study` command again to make it"
            )
        optuna.delete_study(study_name=name, storage=storage)  # under the set-up lock: made again, whole
        existing = None
    if existing is None:
        if settings is None:
            raise ConfigError(f"no study named {name!r} in {redact(storage_url)}")
        space = space or stored_space(settings.space_text, settings.space_source)
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=make_sampler(settings.sampler, settings.seed),
                study_name=name,
                directions=["maximize", "minimize"],
            )
        except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
            return open_study(storage_url, name, settings, space=space, heartbeat_s=heartbeat_s)
        study.set_user_attr(ATTR, settings.to_dict())
        _name_metrics(study, settings)
        for ref in reference_params(settings, space)[: settings.n_trials]:
            study.enqueue_trial(ref["params"], user_attrs={"reference": ref["name"]})
        study.set_user_attr(CREATED, time.strftime("%Y-%m-%dT%H:%M:%S"))  # last: the study is whole
        return OpenStudy(study, settings, space, storage)
    stored = study_settings(existing)
    if settings is not None:
        for key, value in settings.to_dict().items():
            if key not in RUN_OPTIONS and stored.to_dict()[key] != value:
                shown = "(another YAML)" if key == "space_text" else f"{key}={stored.to_dict()[key]!r}"
                raise ConfigError(
                    f"study {name!r} exists with {shown}; this run asks for "
                    f"{'a different space file' if key == 'space_text' else f'{key}={value!r}'}. "
                    "Use the same options to resume it, or another --study-name"
                )
        stored = stored.with_run_options(**{k: getattr(settings, k) for k in RUN_OPTIONS})
        existing.set_user_attr(ATTR, stored.to_dict())
        if existing.metric_names is None:  # a study made before the names were set
            _name_metrics(existing, stored)
    else:
        space = None  # the stored space, not one the caller parsed for other settings
    space = space or stored_space(stored.space_text, stored.space_source)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(stored.sampler, stored.seed))
    return OpenStudy(study, stored, space, storage)


def reference_params(settings: StudySettings, space: Space) -> list[dict[str, Any]]:
    """The parameters of the space's reference configurations, as queued trials."""
    evaluator = evaluator_class(settings.eval)
    return [{"name": ref.name, "params": evaluator.queued_params(space, ref.values)} for ref in references(space)]
