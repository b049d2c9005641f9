"""A cheaper supernet for the default study, checked against the study's own validation.

The committed study ``default-50GFLOPs`` was validated (``sparsearch validate``): five of its configurations
trained stand-alone, two seeds each, their test accuracies stored in the study. Those accuracies do not depend on
the supernet, so a cheaper supernet recipe can be judged without training them again: train the supernet the
cheaper way, score the same five configurations exactly as the study scores (same scoring split, same
batch-norm re-estimation), and compute the validation's figures (Kendall τ against the stand-alone accuracies,
95% bootstrap) with the same code. The stored scores give the "before" figures.

Usage: python experiments/cheaper_supernet.py [--precision bf16] [--sandwich-random 0] [--json OUT]
(about 10 minutes on 2 CPU cores; reads a copy of studies/default-50GFLOPs.db, writes nothing else)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from sparsearch.study.fidelity import Measured, fidelity
from sparsearch.study.session import open_study
from sparsearch.study.structure import Structure
from sparsearch.study.supernet import score_split
from sparsearch.study.supernet_evaluator import SupernetEvaluator
from sparsearch.train.machine import describe_machine

STUDY = "default-50GFLOPs"
RUN = "validation:"  # the stored stand-alone trainings, as sparsearch validate names them


def _rows(study: optuna.Study, scores: dict[int, float]) -> list[Measured]:
    """The validated trials, with ``scores`` as the study's scores."""
    runs: dict[int, list[float]] = {}
    for key, value in study.user_attrs.items():
        if key.startswith(RUN + "trial"):
            number = int(key[len(RUN + "trial") :].split("-")[0])
            runs.setdefault(number, []).append(float(value["test_accuracy"]))
    trials = study.get_trials(deepcopy=False)
    return [
        Measured(str(n), scores[n], int(trials[n].values[1]), tuple(accuracies))
        for n, accuracies in sorted(runs.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16", choices=["32", "bf16"])
    parser.add_argument("--sandwich-random", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "study.db"
        shutil.copyfile(Path("studies") / f"{STUDY}.db", copy)
        opened = open_study(f"sqlite:///{copy}", STUDY, None)
        study, space = opened.study, opened.space
        settings = replace(opened.settings, sandwich_random=args.sandwich_random, supernet_precision=args.precision)
        trials = study.get_trials(deepcopy=False)
        before_rows = _rows(study, {t.number: t.values[0] for t in trials if t.values})
        numbers = [int(r.key) for r in before_rows]
        structure = Structure.from_label(trials[numbers[0]].params["structure"])
        evaluator = SupernetEvaluator(settings, space, torch.device("cpu"), Path(tmp) / "artifacts", log=print)
        start = time.perf_counter()
        net = evaluator.supernet(structure)
        trained = time.perf_counter() - start
        split = score_split(evaluator.data, settings.score_examples)
        scores = {}
        for n in numbers:
            values = trials[n].user_attrs["values"]
            scores[n] = net.score(values, split, torch.device("cpu"), recalibrate=settings.recalibrate_batches).accuracy
            print(f"trial {n}: score {scores[n]:.4f} (study: {trials[n].values[0]:.4f})")
        before, after = fidelity(before_rows), fidelity(_rows(study, scores))
        recorded = study.user_attrs.get(f"supernet:{structure.label}", {})
    result = {
        "experiment": "cheaper_supernet",
        "machine": describe_machine(),
        "recipe": {"precision": args.precision, "sandwich_random": args.sandwich_random},
        "train_seconds": net.train_seconds,
        "wall_seconds": trained,
        "study_train_seconds": recorded.get("train_seconds"),
        "scores": {str(n): scores[n] for n in numbers},
        "study_scores": {str(n): trials[n].values[0] for n in numbers},
        "kendall_before": before["kendall"],
        "kendall_after": after["kendall"],
        "flops_kendall": after["flops_kendall"],
        "partial_kendall_before": before["partial_kendall"],
        "partial_kendall_after": after["partial_kendall"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
