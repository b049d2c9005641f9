"""The evaluator contract, and one trial of a study: sample a configuration, cost it, and (when within
budget) measure its accuracy.

Objectives: proxy accuracy (maximise) and target executed FLOPs per example (minimise). The target
cost is analytic, so it is known before anything trains: a configuration over budget is recorded as
infeasible with ``trial.set_constraint`` (the violation as a fraction of the budget) and accuracy 0,
and is never trained; constrained samplers learn the boundary from it. The same value is stored as
well in the list form (system attribute ``constraints``) that optuna-dashboard reads.

What each trial keeps (user attributes): ``values`` (every parameter of the space), ``target``
(executed/dense FLOPs and MACs, params), ``feasible``, ``proxy`` (accuracy and the split it comes from,
the proxy's FLOPs and params, measured latency), ``usage`` (per layer, on the scoring split),
``seconds``, and in train mode the ``curve`` of accuracies at the early-stopping rungs.
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import optuna
import torch

from sparsearch.cost import count
from sparsearch.data import data_task, load_data
from sparsearch.spaces import Space
from sparsearch.study.artifacts import SharedSupernets
from sparsearch.study.noise import pack, standard_error
from sparsearch.study.settings import StudySettings
from sparsearch.train.run import cost_dict, measure_latency
from sparsearch.train.settings import TrainSettings, default_settings

__all__ = ["Evaluator", "set_budget_constraint"]

DASHBOARD_CONSTRAINTS = "constraints"  # the system attribute optuna-dashboard (0.21) shows and greys by


def set_budget_constraint(trial: optuna.Trial, violation: float) -> None:
    """Record the budget violation (> 0: over budget) where Optuna 5 reads it and where optuna-dashboard does.

    Optuna 5 keeps ``constraints:budget``; the dashboard reads only the list ``constraints``. Optuna reads
    both, so its feasibility is the same (the list's entry is the same number under the name "0").
    """
    storage = trial.storage
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    if "constraints:budget" not in storage.get_trial_system_attrs(trial_id):  # a retried trial's copy has it
        trial.set_constraint("budget", violation)
    storage.set_trial_system_attr(trial_id, DASHBOARD_CONSTRAINTS, [float(violation)])


class Evaluator(ABC):
    """How a study scores its trials: one per evaluation mode (``--eval``), the one thing that knows it.

    Contract: a subclass names its mode (``name``, registered in :mod:`sparsearch.study.evaluators`),
    its default trial count, and implements :meth:`sample` (the trial's parameters) and :meth:`score`
    (proxy accuracy, the proxy's attributes, usage). :meth:`prepare` runs once before workers start,
    :meth:`after_search` once after the search (fine-tuning). The class methods answer what the study's
    records, summary and report need without building an evaluator (no data is loaded for them).

    One evaluator evaluates the trials of one study in one process. Objectives: proxy accuracy (max) and
    the target's cost (min); a configuration over budget is recorded infeasible and never scored.
    """

    name: ClassVar[str]  # the --eval value
    default_trials: ClassVar[int]  # trials when --trials is not given (about 10 minutes on 2 cores)

    def __init__(
        self, settings: StudySettings, space: Space, device: torch.device, artifacts: Path, log=None, runtime=None
    ) -> None:
        self.settings, self.space, self.device = settings, space, device
        self.runtime = runtime  # a torchrun job's processes (prepare() trains the supernets data-parallel)
        self.artifacts = Path(artifacts)
        self.log = log or (lambda message: None)
        recipe = space.proxy.recipe(settings.data, settings.epochs)
        self.data_spec = recipe.data
        self.train_settings: TrainSettings = default_settings(
            data_task(self.data_spec),
            epochs=recipe.epochs,
            seed=settings.seed,
            lr=settings.lr,
        )
        self.latency_table = None
        if settings.budget.unit == "ms":  # feasibility by predicted latency (and the objective, if chosen)
            from sparsearch.study.latency_table import table_from_dict

            self.latency_table = table_from_dict(settings.latency_table)
        self.shared: SharedSupernets | None = None  # the study's artifact store, once the study is open

    # -- what the records, summary and report ask, without an evaluator ---------------------------------
    @classmethod
    def queued_params(cls, space: Space, values: dict[str, Any]) -> dict[str, Any]:
        """The Optuna parameters of a configuration queued as a trial (a reference)."""
        return dict(values)

    @classmethod
    def finetuning(cls, settings: StudySettings) -> str | None:
        """What fine-tuning the Pareto configurations get after the search, in words (None: none)."""
        return None

    @classmethod
    def supernet_seconds(cls, trials) -> dict[str, float]:
        """Training seconds of each supernet the completed ``trials`` were scored on (none: {})."""
        return {}

    @classmethod
    def shown_settings(cls, settings: StudySettings) -> dict[str, Any]:
        """The settings of this mode a report shows."""
        return {}

    # -- the run -------------------------------------------------------------------------------------
    def share(self, study: optuna.Study, storage, store: Path) -> None:
        """Take the study's supernets from, and give new ones to, the artifact store in ``store``."""
        self.shared = SharedSupernets(study, storage, store, self.log)

    @functools.cached_property
    def data(self):
        """The proxy data, loaded on first use (a run checks it before it writes anything)."""
        return load_data(
            self.data_spec,
            input_size=self.space.proxy.input_size,
            seed=self.train_settings.seed,
            val_fraction=self.train_settings.val_fraction,
        )

    def prepare(self) -> None:  # noqa: B027 (optional: most modes have nothing to prepare)
        """Work done once before the workers start (training the supernets)."""

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The configuration of ``trial``: every parameter of the space, drawn as this mode draws them."""

    @abstractmethod
    def score(self, trial: optuna.Trial, values: dict[str, Any], cost: float) -> tuple[float, dict, dict]:
        """(proxy accuracy, the proxy's attributes, usage) of a configuration within budget."""

    def after_search(self, study: optuna.Study) -> dict[str, Any]:
        """Work done once after the search, kept in the study (fine-tuning): per trial number."""
        return {}

    # -- the objective --------------------------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        start = time.perf_counter()
        values = self.sample(trial)
        trial.set_user_attr("values", values)
        trial.set_user_attr("eval", self.name)
        config = self.space.target_config(values)
        target = cost_dict(count(config))
        flops = target["executed_flops"]
        budget = self.settings.budget
        cost = float(flops)
        if self.latency_table is not None:
            target["predicted_ms"] = cost = self.latency_table.predict(config)
        trial.set_user_attr("target", target)
        set_budget_constraint(trial, budget.violation(cost))  # > 0: over budget
        trial.set_user_attr("feasible", budget.admits(cost))
        second = float(cost if self.settings.objective == "latency" else flops)  # the objective minimised
        if not budget.admits(cost):
            trial.set_user_attr("seconds", time.perf_counter() - start)
            return 0.0, second
        accuracy, proxy, usage = self.score(trial, values, second)
        trial.set_user_attr("proxy", proxy)
        trial.set_user_attr("usage", usage)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return accuracy, second

    def _latency(self, model) -> tuple[float, int]:
        """Median milliseconds of a forward pass of the first validation examples, and the batch size."""
        split = self.data.val
        batch = split.batch(torch.arange(min(self.settings.latency_batch, len(split)))).to(self.device)
        return measure_latency(model, batch).ms, len(batch)

    def _proxy_attrs(self, values: dict[str, Any], model, split_name: str, result) -> dict[str, Any]:
        cost = count(self.space.proxy_config(values))
        latency_ms, latency_batch = self._latency(model)
        return {
            "accuracy": result.accuracy,
            "split": split_name,
            "examples": result.examples,
            "standard_error": standard_error(result.accuracy, result.examples),
            "correct": pack((result.predictions == result.labels).tolist()),  # for paired comparisons
            "executed_flops": cost.executed_flops,
            "dense_flops": cost.dense_flops,
            "params": cost.params,
            "latency_ms": latency_ms,
            "latency_batch": latency_batch,
            "device": str(self.device),
        }

    def _split_name(self) -> str:
        n = self.settings.score_examples
        return "val" if n <= 0 or n >= len(self.data.val) else f"val[:{n}]"
