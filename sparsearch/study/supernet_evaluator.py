"""Supernet mode (``--eval supernet``): trials scored on weight-sharing supernets, the Pareto set fine-tuned.

Each structure (experts and routing: what cannot share weights) gets one supernet, trained once, before
the workers start, and shared with every worker through the study's artifact store; a trial chooses its
structure as one categorical parameter and its elastic knobs (k, fan-in) as the others.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from sparsearch.errors import ConfigError
from sparsearch.spaces import Space
from sparsearch.spaces.space import knob_of
from sparsearch.study.evaluator import Evaluator
from sparsearch.study.pareto import pareto_front
from sparsearch.study.progress import study_points
from sparsearch.study.settings import StudySettings
from sparsearch.study.structure import Structure, candidate_structures, choose_structures, elastic_parameters
from sparsearch.study.supernet import Sampling, Supernet, score_split
from sparsearch.train.runtime import Runtime

__all__ = ["SupernetEvaluator"]


SUPERNET_SAVE_EVERY = 200  # steps between a supernet training's resumable states (a few seconds of writing an hour)


class SupernetEvaluator(Evaluator):
    """Scores a configuration on its structure's supernet (k and fan-in set on the shared weights)."""

    name = "supernet"
    default_trials = 100

    def __init__(
        self, settings: StudySettings, space: Space, device: torch.device, artifacts: Path, log=None, runtime=None
    ) -> None:
        super().__init__(settings, space, device, artifacts, log, runtime)
        self.structures = choose_structures(space, settings.supernets, settings.seed)
        self.sampling = Sampling(settings.sampling, settings.sandwich_random, settings.distill)
        self._supernets: dict[str, Supernet] = {}

    @classmethod
    def queued_params(cls, space: Space, values: dict[str, Any]) -> dict[str, Any]:
        """The structure is one categorical parameter (the reference structure); the elastic knobs the others."""
        params = {k: v for k, v in values.items() if knob_of(k) in space.shared_knobs}
        params["structure"] = candidate_structures(space)[0].label
        return params

    @classmethod
    def finetuning(cls, settings: StudySettings) -> str | None:
        return f"after {settings.finetune_steps} steps of fine-tuning, on the whole validation split"

    @classmethod
    def supernet_seconds(cls, trials) -> dict[str, float]:
        seconds = {}
        for t in trials:
            proxy = t.user_attrs.get("proxy", {})
            if "supernet_train_seconds" in proxy:
                seconds[t.params["structure"]] = proxy["supernet_train_seconds"]
        return seconds

    @classmethod
    def shown_settings(cls, settings: StudySettings) -> dict[str, Any]:
        return {"supernets": settings.supernets}

    def prepare(self) -> None:
        together = self.runtime is not None and self.runtime.world > 1
        for structure in self.structures:  # trained once, here, before workers start
            if together:
                self._prepare_together(structure)
            else:
                self.supernet(structure)

    def _prepare_together(self, structure: Structure) -> None:
        """In a torchrun job: rank 0 finds the supernet (memory, store, file) or, holding the study's
        training lock, has every process train it data-parallel; rank 0 saves and publishes it."""
        runtime = self.runtime
        if not runtime.is_main:
            if runtime.broadcast(0):  # rank 0 says whether they train it together
                self._train_supernet(structure, self._path(structure))
            return
        label, path, shared = structure.label, self._path(structure), self.shared
        if label in self._supernets or (shared is not None and shared.fetch(label, path)):
            runtime.broadcast(0)
            self.supernet(structure)  # from memory, or the download just made
            return
        lock = contextlib.nullcontext() if shared is None else shared.training_lock(label)
        with lock:
            fetched = shared is not None and shared.fetch(label, path)  # trained by a process we waited for
            net = self._load_supernet(structure, path)
            runtime.broadcast(1 if net is None and not fetched else 0)
            if net is None and fetched:
                raise ConfigError(f"supernet {label} in the artifact store was trained with other settings")
            if net is None:
                net = self._train_supernet(structure, path)
            if shared is not None and not fetched:  # trained now, or saved here before the study had a store
                shared.publish(label, path, net.train_seconds)
        self._supernets[label] = net

    def _path(self, structure: Structure) -> Path:
        return self.artifacts / "supernets" / structure.label.replace(",", "_").replace("=", "-")

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        label = trial.suggest_categorical("structure", [s.label for s in self.structures])
        elastic = self.space.sample(trial, elastic_parameters(self.space))
        return {**Structure.from_label(label).values(self.space), **elastic}

    def score(self, trial: optuna.Trial, values: dict[str, Any], cost: float):
        net = self.supernet(Structure.from_label(trial.params["structure"]))
        split = score_split(self.data, self.settings.score_examples)
        result = net.score(values, split, self.device, recalibrate=self.settings.recalibrate_batches)
        proxy = self._proxy_attrs(values, net.model, self._split_name(), result)
        proxy["supernet_train_seconds"] = net.train_seconds
        return result.accuracy, proxy, result.usage

    def supernet(self, structure: Structure) -> Supernet:
        """The supernet of ``structure``: in memory; else the one the study's artifact store holds (downloaded
        and verified); else saved under the study's directory (then published); else trained, by one process
        at a time, and published."""
        label = structure.label
        if label in self._supernets:
            return self._supernets[label]
        path = self._path(structure)
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
        return Supernet.load(
            path,
            self.space,
            structure,
            self.train_settings,
            self.data,
            self.device,
            self.sampling,
            self.settings.supernet_precision,
        )

    def _training_runtime(self) -> Runtime | None:
        """The study's runtime (a torchrun job's processes, or none) at the supernet's precision."""
        precision = self.settings.supernet_precision
        if precision == "32":
            return self.runtime
        return replace(self.runtime or Runtime(self.device), precision=precision)

    def _train_supernet(self, structure: Structure, path: Path) -> Supernet:
        self.log(
            f"training the supernet {structure.label} ({self.train_settings.epochs} epoch(s), "
            f"{self.sampling.rule} sampling)"
        )
        net = Supernet.train(
            self.space,
            structure,
            self.train_settings,
            self.device,
            data=self.data_spec,
            sampling=self.sampling,
            save_at=path.with_name(path.name + ".resume"),  # a killed study resumes the training from here
            save_every=SUPERNET_SAVE_EVERY,
            runtime=self._training_runtime(),
        )
        if self.runtime is not None and not self.runtime.is_main:
            return net  # rank 0 saves it
        net.save(path)
        self.log(f"supernet {structure.label} trained in {net.train_seconds:.0f} s")
        return net

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

    def after_search(self, study: optuna.Study) -> dict[str, Any]:
        """Fine-tune the Pareto configurations (the cheapest first, at most ``finetune_top``) and the feasible
        references; kept in the study's ``finetuned`` attribute, so a resumed study does not redo them."""
        done: dict[str, Any] = dict(study.user_attrs.get("finetuned", {}))
        trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        front = pareto_front(study_points(study))[: self.settings.finetune_top]
        chosen = [p.number for p in front] + [
            n for n, t in trials.items() if t.user_attrs.get("reference") and t.user_attrs.get("feasible")
        ]
        for number in dict.fromkeys(chosen):
            key = str(number)
            if key in done and done[key].get("steps") == self.settings.finetune_steps:
                continue
            self.log(f"fine-tuning trial {number} ({self.settings.finetune_steps} steps)")
            done[key] = self.finetune(trials[number])
            study.set_user_attr("finetuned", done)
        return done
