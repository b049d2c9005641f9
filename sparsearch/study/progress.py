"""The live progress line of a study: trials done / feasible / infeasible, best accuracy, hypervolume."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import optuna
from optuna.trial import TrialState

from sparsearch.cost import format_flops
from sparsearch.study.pareto import Point, hypervolume

__all__ = ["Progress", "study_points", "summary_line"]


def objective_cost(value: float) -> float:
    """The second objective: FLOPs are whole numbers (kept as ints), predicted latencies are not."""
    return int(value) if float(value).is_integer() else value


def study_points(study: optuna.Study) -> list[Point]:
    """(accuracy, target FLOPs) of the completed feasible trials."""
    return [
        Point(t.number, t.values[0], objective_cost(t.values[1]))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("feasible")
    ]


def summary_line(study: optuna.Study, total: int, budget: int) -> str:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.is_finished()]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    feasible = sum(1 for t in complete if t.user_attrs.get("feasible"))
    infeasible = len(complete) - feasible
    pruned = sum(1 for t in done if t.state == TrialState.PRUNED)
    failed = sum(1 for t in done if t.state == TrialState.FAIL)
    points = study_points(study)
    best = max(points, key=lambda p: p.accuracy, default=None)
    best_text = f"{best.accuracy:.3f} at {format_flops(best.flops)}" if best else "-"
    parts = [f"trials {len(done)}/{total}", f"feasible {feasible}", f"infeasible {infeasible}"]
    if pruned:
        parts.append(f"stopped early {pruned}")
    if failed:
        parts.append(f"failed {failed}")
    parts += [f"best under budget {best_text}", f"hypervolume {hypervolume(points, budget):.4f}"]
    return " | ".join(parts)


class Progress:
    """Rewrites one line on a terminal; elsewhere prints a line per finished trial (for logs)."""

    def __init__(self, total: int, budget: int, stream: TextIO | None = None) -> None:
        self.total, self.budget = total, budget
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, study: optuna.Study) -> None:
        elapsed = time.perf_counter() - self.start
        line = f"{summary_line(study, self.total, self.budget)} | {elapsed / 60:.1f} min"
        if self.live:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
