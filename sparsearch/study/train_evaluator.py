"""Train mode (``--eval train``): every configuration trained stand-alone on the proxy, stopped early when it
falls behind cheaper trials at the same point (:mod:`~sparsearch.study.early_stop`)."""

from __future__ import annotations

import time
from typing import Any

import optuna

from sparsearch.study.early_stop import RUNGS, Peer, should_stop
from sparsearch.study.evaluator import Evaluator
from sparsearch.study.supernet import score_split
from sparsearch.train.loop import StepInfo, epoch_steps, evaluate, fit
from sparsearch.train.run import build_run

__all__ = ["TrainEvaluator"]


class TrainEvaluator(Evaluator):
    """Trains each configuration; its accuracy curve at the rungs is kept for early stopping."""

    name = "train"
    default_trials = 5

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        return self.space.sample(trial)

    def score(self, trial: optuna.Trial, values: dict[str, Any], cost: float):
        flops = cost
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
                if t.user_attrs.get("feasible") and t.user_attrs.get("eval") == self.name
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
