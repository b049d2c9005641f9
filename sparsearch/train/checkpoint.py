"""Checkpoints: a directory holding ``model.safetensors`` and ``config.json``. Nothing is unpickled.

config.json records the model (configuration, task, classes, vocabulary), the space and its values,
the data and training settings, metrics, usage statistics, library versions, and the SHA-256 of the
weights file, so a truncated or altered file is refused before it is parsed.

Writes are atomic: the files are written and synced in a temporary sibling directory, which is then
renamed into place; an existing checkpoint is replaced only after the new one is complete.
Weights from elsewhere (``.pt``/``.pth``) are read with ``torch.load(weights_only=True)``; a file
that needs pickle code is refused, and the code never runs.
"""

from __future__ import annotations

import contextlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from sparsearch.errors import SparsearchError
from sparsearch.limits import MAX, read_capped
from sparsearch.models.edits import Edit, EditError, apply_edits
from sparsearch.safe_io import atomic_dir, file_sha256, refuse_foreign, save_tensors
from sparsearch.strict_json import parse_json
from sparsearch.train.model import ModelSpec, build_task_model
from sparsearch.version import __version__

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "Compaction",
    "is_checkpoint",
    "load_checkpoint",
    "load_weights_file",
    "save_checkpoint",
    "write_checkpoint_files",
]

FORMAT = "sparsearch-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(SparsearchError):
    """A checkpoint or weights file that cannot be used as it is."""


@dataclass(frozen=True)
class Compaction:
    """How a compacted checkpoint was made: its source and the edits that rebuild it from the source model."""

    source: str
    source_sha256: str
    edits: tuple[Edit, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_sha256": self.source_sha256, "edits": [e.stored() for e in self.edits]}


@dataclass(frozen=True)
class CheckpointMeta:
    """config.json, read once: the fields the library acts on, typed, and the whole ``record``."""

    record: dict[str, Any]  # config.json as written (metrics, usage, versions... are read from here)
    weights_sha256: str
    data: str | None  # the data spec it was trained on, if recorded
    training: dict[str, Any]  # the training settings it was trained with, as recorded
    compaction: Compaction | None  # set for a model made by ``sparsearch prune``

    @classmethod
    def parse(cls, record: dict[str, Any], where: Path) -> CheckpointMeta:
        weights = record.get("weights")
        sha = weights.get("sha256") if isinstance(weights, dict) else None
        data = record.get("data")
        spec = data.get("spec") if isinstance(data, dict) else None
        training = record.get("training")
        compaction = None
        if "compaction" in record:
            raw = record["compaction"]
            try:
                if not isinstance(raw, dict) or not isinstance(raw.get("edits"), list):
                    raise EditError("'compaction' must be an object with a list of 'edits'")
                edits = tuple(Edit.parse(e) for e in raw["edits"])
            except EditError as err:
                raise CheckpointError(f"{where}: cannot rebuild the compacted model ({err})") from None
            compaction = Compaction(str(raw.get("source", "")), str(raw.get("source_sha256", "")), edits)
        return cls(
            record,
            sha if isinstance(sha, str) else "",
            spec if isinstance(spec, str) and spec else None,
            training if isinstance(training, dict) else {},
            compaction,
        )

    @property
    def seed(self) -> int:
        """The seed of the split it was trained with (0 if not recorded)."""
        return int(self.training.get("seed", 0))

    @property
    def val_fraction(self) -> float:
        return float(self.training.get("val_fraction", 0.1))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics", {})

    @property
    def usage(self) -> dict[str, Any]:
        return self.record.get("usage", {})

    @property
    def supernet(self) -> dict[str, Any]:
        value = self.record.get("supernet")
        return value if isinstance(value, dict) else {}


@dataclass
class Checkpoint:
    model: nn.Module
    spec: ModelSpec
    meta: CheckpointMeta
    path: Path


def versions() -> dict[str, str]:
    import optuna
    import safetensors

    return {
        "sparsearch": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
    }


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def write_checkpoint_files(directory: Path, model: nn.Module, spec: ModelSpec, **meta: Any) -> None:
    """Write the weights and config.json of a checkpoint into the existing, empty ``directory`` (synced by
    the caller's :func:`~sparsearch.safe_io.atomic_dir`, which swaps it into place)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(state, directory / WEIGHTS_FILE, metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec.to_dict(),
        **meta,
        "weights": {"file": WEIGHTS_FILE, "sha256": file_sha256(directory / WEIGHTS_FILE), "tensors": len(state)},
        "versions": versions(),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")


def save_checkpoint(out: str | Path, model: nn.Module, spec: ModelSpec, **meta: Any) -> Path:
    """Write ``model`` with ``spec`` and ``meta`` (space, data, training, metrics, usage...) to ``out``.

    ``out`` must not exist, be empty, or hold a checkpoint (which is replaced); anything else is refused.
    """
    out = Path(out)
    refuse_foreign(out, is_checkpoint, "a sparsearch checkpoint", CheckpointError)
    with atomic_dir(out, "checkpoint") as tmp:
        write_checkpoint_files(tmp, model, spec, **meta)
    return out


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (no such directory)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: not a sparsearch checkpoint ({name} is missing)")
    try:
        meta = parse_json(read_capped(path / CONFIG_FILE, MAX["json_file_bytes"], "checkpoint's config.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG_FILE}: not a sparsearch checkpoint (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: format version {meta.get('format_version')!r}; "
            f"this sparsearch reads {FORMAT_VERSION}"
        )
    return meta


def _check_dtypes(path: Path, expected: dict[str, Tensor], found: dict[str, Tensor]) -> None:
    """Refuse weights of another dtype than the model's (names and shapes were checked on the header)."""
    for key, tensor in expected.items():
        if found[key].dtype != tensor.dtype:
            raise CheckpointError(
                f"{path}: config.json does not match the weights: {key} is {found[key].dtype}, "
                f"the model has {tensor.dtype}"
            )


def _header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a safetensors file declares, read from its header only."""
    try:
        with safe_open(weights, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from None


def _check_shapes(path: Path, expected: dict[str, Tensor], found: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights whose names or shapes (from the file's header) do not fit the model."""
    for key, tensor in expected.items():
        if key not in found:
            raise CheckpointError(f"{path}: config.json does not match the weights: {key} is missing from the weights")
        if found[key] != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: config.json does not match the weights: {key} has shape {found[key]} "
                f"in the weights but {tuple(tensor.shape)} in the model"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: config.json does not match the weights: {extra[0]} is not in the model")


def _check_finite(weights: Path, state: dict[str, Tensor]) -> None:
    """Refuse weights that hold NaN or infinity: a model that computes nothing but NaN (a diverged
    training) is named on load instead of reporting accuracies of nothing."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{weights}: the weights hold non-finite values (NaN or infinity), first in {key}; "
                "the training diverged (retrain, e.g. with a lower --lr)"
            )


def _build(path: Path, spec: ModelSpec, meta: CheckpointMeta, device: str) -> nn.Module:
    """The checkpoint's model (compacted as it records), built on ``device``."""
    try:
        with torch.device(device):
            model = build_task_model(spec)  # refused before allocation when config.json asks for a huge model
    except (SparsearchError, ValueError) as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot build its model ({err})") from None
    if meta.compaction is not None:  # a compacted model: the source model with its structural edits
        try:
            apply_edits(model, meta.compaction.edits)
        except SparsearchError as err:
            raise CheckpointError(f"{path / CONFIG_FILE}: cannot rebuild the compacted model ({err})") from None
    return model


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """The model of a checkpoint directory, in eval mode, with its config.json."""
    path = Path(path)
    record = _read_config(path)
    meta = CheckpointMeta.parse(record, path / CONFIG_FILE)
    weights = path / WEIGHTS_FILE
    if meta.weights_sha256 != file_sha256(weights):
        raise CheckpointError(
            f"{weights}: truncated or changed since it was written (SHA-256 differs from config.json)"
        )
    try:
        spec = ModelSpec.from_dict(record.get("model"))
    except SparsearchError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: {err}") from None
    # The model's shapes first, on the meta device (no memory): a config.json that asks for a model larger
    # than its weights file holds is refused before the model is allocated, as are weights of other shapes.
    declared = _header_shapes(weights)
    skeleton = None
    if getattr(spec.config, "family", None) != "user":  # a user's factory runs once, and may not know meta
        with contextlib.suppress(Exception):  # the build below says what is wrong
            skeleton = _build(path, spec, meta, "meta")
    if skeleton is not None:
        _check_shapes(path, skeleton.state_dict(), declared)
    model = _build(path, spec, meta, "cpu")
    if skeleton is None:
        _check_shapes(path, model.state_dict(), declared)  # before a byte of the tensors is read
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from None
    _check_dtypes(path, model.state_dict(), state)
    _check_finite(weights, state)
    model.load_state_dict(state, strict=True)
    return Checkpoint(model.to(device).eval(), spec, meta, path)


def load_weights_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a sparsearch checkpoint directory, a ``.safetensors`` or a ``.pt``/``.pth`` file.

    ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)``: a file that needs pickle
    code (classes, functions) is refused before any of it runs.
    """
    path = Path(path)
    if path.is_dir():
        return {k: v for k, v in load_checkpoint(path).model.state_dict().items()}
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
        _check_finite(path, state)
        return state
    if path.suffix not in (".pt", ".pth"):
        raise CheckpointError(f"{path}: expected a checkpoint directory, .safetensors, .pt or .pth")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for pickle code; anything else for a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused: it needs pickle code to load, or is damaged ({first}); "
            "save a plain state dict or safetensors instead"
        ) from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()):
        raise CheckpointError(f"{path}: expected a state dict (names to tensors)")
    _check_finite(path, loaded)
    return loaded
