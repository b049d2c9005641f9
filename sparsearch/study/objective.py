"""One trial of a study: sample a configuration, cost it, and (when within budget) measure its accuracy.

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
from pathlib import Path
from typing import Any

import optuna
import torch

from sparsearch.cost import count
from sparsearch.data import data_task, load_data
from sparsearch.errors import ConfigError
from sparsearch.spaces import Space
from sparsearch.study.artifacts import SharedSupernets
from sparsearch.study.early_stop import RUNGS, Peer, should_stop
from sparsearch.study.noise import pack, standard_error
from sparsearch.study.settings import StudySettings
from sparsearch.study.structure import Structure, choose_structures, elastic_parameters
from sparsearch.study.supernet import Sampling, Supernet, score_split
from sparsearch.train.loop import StepInfo, epoch_steps, evaluate, fit
from sparsearch.train.run import build_run, cost_dict, measure_latency
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


class Evaluator:
    """Evaluates the trials of one study in one process (its supernets are trained or loaded once)."""

    def __init__(self, settings: StudySettings, space: Space, device: torch.device, artifacts: Path, log=None) -> None:
        self.settings, self.space, self.device = settings, space, device
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
        self.structures = (
            choose_structures(space, settings.supernets, settings.seed) if settings.eval == "supernet" else []
        )
        self.sampling = Sampling(settings.sampling, settings.sandwich_random, settings.distill)
        self.latency_table = None
        if settings.budget_ms is not None:  # feasibility by predicted latency (and the objective, if chosen)
            from sparsearch.study.latency_table import table_from_dict

            self.latency_table = table_from_dict(settings.latency_table)
        self._supernets: dict[str, Supernet] = {}
        self.shared: SharedSupernets | None = None  # the study's artifact store, once the study is open

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

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.settings.eval == "train":
            return self.space.sample(trial)
        label = trial.suggest_categorical("structure", [s.label for s in self.structures])
        elastic = self.space.sample(trial, elastic_parameters(self.space))
        return {**Structure.from_label(label).values(self.space), **elastic}

    # -- the objective --------------------------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        start = time.perf_counter()
        values = self.sample(trial)
        trial.set_user_attr("values", values)
        trial.set_user_attr("eval", self.settings.eval)
        config = self.space.target_config(values)
        target = cost_dict(count(config))
        flops = target["executed_flops"]
        cost, budget = float(flops), float(self.settings.budget_flops)
        if self.latency_table is not None:
            target["predicted_ms"] = cost = self.latency_table.predict(config)
            budget = self.settings.budget_ms
        trial.set_user_attr("target", target)
        set_budget_constraint(trial, (cost - budget) / budget)  # > 0: over budget
        trial.set_user_attr("feasible", cost <= budget)
        second = float(cost if self.settings.objective == "latency" else flops)  # the objective minimised
        if cost > budget:
            trial.set_user_attr("seconds", time.perf_counter() - start)
            return 0.0, second
        if self.settings.eval == "supernet":
            accuracy, proxy, usage = self._score_supernet(trial, values)
        else:
            accuracy, proxy, usage = self._train(trial, values, second)
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

    # -- supernet mode --------------------------------------------------------------------------
    def supernet(self, structure: Structure) -> Supernet:
        """The supernet of ``structure``: in memory; else the one the study's artifact store holds (downloaded
        and verified); else saved under the study's directory (then published); else trained, by one process
        at a time, and published."""
        label = structure.label
        if label in self._supernets:
            return self._supernets[label]
        path = self.artifacts / "supernets" / label.replace(",", "_").replace("=", "-")
        shared = self.shared
        if shared is not None and shared.fetch(label, path):
            net = self._load_supernet(structure, path)
            if net is None:
                raise ConfigError(f"supernet {label} in the artifact store was trained with other settings")
        elif (net := self._load_supernet(structure, path)) is not None:
            if shared is not None:  # saved here before the study had a store: the other workers get this one
                shared.publish(label, path, net.train_seconds)
        elif shared is None:
            net = self._train_supernet(structure, path)
        else:
            with shared.training_lock(label):
                if shared.fetch(label, path):  # trained by the process we waited for
                    net = self._load_supernet(structure, path)
                if net is None:
                    net = self._train_supernet(structure, path)
                    shared.publish(label, path, net.train_seconds)
        self._supernets[label] = net
        return net

    def _load_supernet(self, structure: Structure, path: Path) -> Supernet | None:
        return Supernet.load(path, self.space, structure, self.train_settings, self.data, self.device, self.sampling)

    def _train_supernet(self, structure: Structure, path: Path) -> Supernet:
        self.log(
            f"training the supernet {structure.label} ({self.train_settings.epochs} epoch(s), "
            f"{self.sampling.rule} sampling)"
        )
        net = Supernet.train(
            self.space, structure, self.train_settings, self.device, data=self.data_spec, sampling=self.sampling
        )
        net.save(path)
        self.log(f"supernet {structure.label} trained in {net.train_seconds:.0f} s")
        return net

    def _score_supernet(self, trial: optuna.Trial, values: dict[str, Any]):
        net = self.supernet(Structure.from_label(trial.params["structure"]))
        split = score_split(self.data, self.settings.score_examples)
        result = net.score(values, split, self.device, recalibrate=self.settings.recalibrate_batches)
        proxy = self._proxy_attrs(values, net.model, self._split_name(), result)
        proxy["supernet_train_seconds"] = net.train_seconds
        return result.accuracy, proxy, result.usage

    def finetune(self, frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """Fine-tune a scored configuration from its supernet; its accuracy on the whole validation split."""
        start = time.perf_counter()
        values = frozen.user_attrs["values"]
        net = self.supernet(Structure.from_label(frozen.params["structure"]))
        model, accuracy = net.finetune(values, self.settings.finetune_steps, self.device)
        latency_ms, latency_batch = self._latency(model)
        return {
            "accuracy": accuracy,
            "split": "val",
            "examples": len(net.data.val),
            "steps": self.settings.finetune_steps,
            "latency_ms": latency_ms,
            "latency_batch": latency_batch,
            "seconds": time.perf_counter() - start,
        }

    # -- train mode -----------------------------------------------------------------------------
    def _train(self, trial: optuna.Trial, values: dict[str, Any], flops: int):
        settings = self.train_settings
        _, data, model = build_run(self.space, values, settings, data=self.data_spec)
        total = epoch_steps(data, settings) * settings.epochs
        rungs = sorted({max(1, round(r * total)) for r in RUNGS} - {total})
        split = score_split(data, self.settings.score_examples)
        curve: list[float] = []

        def on_step(info: StepInfo) -> None:
            done = (info.epoch - 1) * info.steps + info.step
            if done not in rungs:
                return
            accuracy = evaluate(model, split, data.task, settings.eval_batch_size, self.device).accuracy
            model.train()
            curve.append(accuracy)
            trial.set_user_attr("curve", curve)
            peers = [
                Peer(t.values[1], tuple(t.user_attrs.get("curve", ())))
                for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.user_attrs.get("feasible") and t.user_attrs.get("eval") == "train"
            ]
            rung = len(curve) - 1
            if should_stop(
                rung, accuracy, flops, peers, margin=self.settings.stop_margin, min_peers=self.settings.stop_peers
            ):
                trial.set_user_attr("stopped_at", {"rung": rung, "step": done, "of": total, "accuracy": accuracy})
                raise optuna.TrialPruned(f"behind {self.settings.stop_peers} cheaper trials at step {done} of {total}")

        start = time.perf_counter()
        fit(model, data, settings, self.device, on_step=on_step)
        result = evaluate(model, data.val, data.task, settings.eval_batch_size, self.device, usage=True)
        proxy = self._proxy_attrs(values, model, "val", result)
        proxy["train_seconds"] = time.perf_counter() - start
        return result.accuracy, proxy, result.usage
