"""Resumable training: the state a run saves every N steps, and continuing from it.

The state is a directory of two files, written atomically (a crash or SIGTERM while saving leaves the
previous state whole): ``state.safetensors`` (the weights and buffers, the optimiser's tensors, the
generators' states: the batch order's at the start of the epoch, the global RNG's, a supernet's
sampling generator) and ``state.json`` (the step, the epoch's running loss, the history, the optimiser's
other fields, the gradient scaler, and what run it belongs to). Nothing is unpickled.

On the CPU with deterministic kernels a resumed run ends with the same weights, bit for bit, as one
never interrupted (``tests/train/test_resume.py`` kills one with SIGTERM at a random step). A state is
only used by the run it was saved for: the same space, values, settings and data; anything else is
refused. The number of processes may differ (a global batch is the same whichever processes share it).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from sparsearch.errors import SparsearchError
from sparsearch.limits import MAX, read_capped
from sparsearch.safe_io import atomic_dir, refuse_foreign, save_tensors
from sparsearch.strict_json import parse_json
from sparsearch.version import __version__

__all__ = ["FORMAT", "ResumeError", "Resumed", "Saving", "is_resume_state", "resume_path", "saved_by"]

FORMAT = "sparsearch-resume"
FORMAT_VERSION = 1
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


class ResumeError(SparsearchError):
    """A resumable state that cannot be used."""


def resume_path(out: str | Path) -> Path:
    """Where the run writing the checkpoint ``out`` keeps its resumable state: ``OUT.resume`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def is_resume_state(path: Path) -> bool:
    return (path / STATE_JSON).is_file()


def saved_by(path: Path, identity: dict[str, Any]) -> bool:
    """True when ``path`` holds a readable state saved by the run ``identity`` (a study resumes its
    supernet's training only then; another state there is replaced by the first save)."""
    if not is_resume_state(path):
        return False
    try:
        record = parse_json(read_capped(path / STATE_JSON, MAX["json_file_bytes"], "resumable state"))
    except (SparsearchError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and record.get("run") == json.loads(json.dumps(identity))


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        rest["state"][str(pid)] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{pid}/{key}"] = value.detach().cpu().clone()
            else:
                rest["state"][str(pid)][key] = value
    return tensors, rest


def _optimizer_join(tensors: dict[str, Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(entry) for pid, entry in rest["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


@dataclass
class Resumed:
    """A saved state, read and checked."""

    epoch: int
    step: int  # steps done in that epoch
    step_global: int
    tally: tuple[int, float, int, float]  # examples, loss sum, correct, seconds of the epoch so far
    history: list[dict[str, Any]]
    tensors: dict[str, Tensor]
    record: dict[str, Any]

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler,
        generator: torch.Generator,
        generators: tuple[torch.Generator, ...] = (),
    ) -> None:
        """Put the saved weights, optimiser, scaler and generators back in place."""
        weights = {k[len("model/") :]: v for k, v in self.tensors.items() if k.startswith("model/")}
        try:
            model.load_state_dict(weights, strict=True)
            optimizer.load_state_dict(_optimizer_join(self.tensors, self.record["optimizer"]))
        except (RuntimeError, KeyError, ValueError) as err:
            raise ResumeError(f"the resumable state does not fit this run's model ({err})") from None
        if scaler is not None and self.record.get("scaler"):
            scaler.load_state_dict(self.record["scaler"])
        generator.set_state(self.tensors["rng/epoch"])
        torch.set_rng_state(self.tensors["rng/torch"])
        for i, g in enumerate(generators):
            g.set_state(self.tensors[f"rng/extra/{i}"])
        if "rng/cuda" in self.tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.tensors["rng/cuda"])


class Saving:
    """Save a resumable state every ``every`` steps to ``path`` (0: never), for the run ``identity``;
    with ``resume``, continue from the state saved there (refused if it is another run's).

    ``generators``: further generators the run draws from (a supernet's configuration sampling), saved
    and restored with the rest.
    """

    def __init__(
        self,
        path: str | Path,
        every: int,
        identity: dict[str, Any],
        *,
        resume: bool = False,
        generators: tuple[torch.Generator, ...] = (),
    ) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ResumeError(f"save every {every!r} steps: give an integer >= 0")
        self.path, self.every, self.generators = Path(path), every, generators
        self.identity = json.loads(json.dumps(identity))
        self.resumed = self._load() if resume else None

    def due(self, step_global: int) -> bool:
        return self.every > 0 and step_global % self.every == 0

    def _load(self) -> Resumed:
        path = self.path
        if not is_resume_state(path):
            raise ResumeError(f"{path}: no resumable state to resume from (a run saves one every --save-every steps)")
        try:
            record = parse_json(read_capped(path / STATE_JSON, MAX["json_file_bytes"], "resumable state"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResumeError(f"{path / STATE_JSON}: not valid JSON ({err})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ResumeError(f"{path}: not a sparsearch resumable state")
        if record.get("format_version") != FORMAT_VERSION:
            raise ResumeError(f"{path}: format version {record.get('format_version')!r}; this reads {FORMAT_VERSION}")
        if record.get("run") != self.identity:
            differing = sorted(
                k
                for k in set(self.identity) | set(record.get("run") or {})
                if (record.get("run") or {}).get(k) != self.identity.get(k)
            )
            raise ResumeError(
                f"{path}: saved by another run (its {', '.join(differing) or 'record'} differ); "
                "resume with the same arguments, or remove it to start afresh"
            )
        try:
            tensors = load_file(path / STATE_TENSORS)
        except (SafetensorError, OSError) as err:
            raise ResumeError(f"{path / STATE_TENSORS}: cannot be read ({err})") from None
        try:
            return Resumed(
                epoch=int(record["epoch"]),
                step=int(record["step"]),
                step_global=int(record["step_global"]),
                tally=tuple(record["tally"]),
                history=list(record["history"]),
                tensors=tensors,
                record=record,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ResumeError(f"{path}: incomplete resumable state ({err})") from None

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler,
        *,
        generator_at_epoch: Tensor,
        epoch: int,
        step: int,
        step_global: int,
        tally: tuple,
        history: list[dict[str, Any]],
        runtime,
    ) -> None:
        """Write the state (rank 0 only; the other processes hold the same)."""
        if not runtime.is_main:
            return
        tensors = {f"model/{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
        opt_tensors, opt_rest = _optimizer_split(optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors["rng/epoch"] = generator_at_epoch
        tensors["rng/torch"] = torch.get_rng_state()
        for i, g in enumerate(self.generators):
            tensors[f"rng/extra/{i}"] = g.get_state()
        if runtime.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(runtime.device)
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sparsearch": __version__,
            "run": self.identity,
            "epoch": epoch,
            "step": step,
            "step_global": step_global,
            "tally": list(tally),
            "history": history,
            "optimizer": opt_rest,
            "scaler": None if scaler is None else scaler.state_dict(),
        }
        refuse_foreign(self.path, is_resume_state, "a sparsearch resumable state", ResumeError)
        with atomic_dir(self.path, "resumable state") as tmp:
            save_tensors(tensors, tmp / STATE_TENSORS)
            (tmp / STATE_JSON).write_text(json.dumps(record, indent=1))

    def finished(self, runtime) -> None:
        """The run completed: its resumable state is no longer needed."""
        if runtime.is_main and is_resume_state(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
