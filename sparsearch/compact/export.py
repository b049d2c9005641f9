"""``torch.export`` of a compacted model: a program file that plain torch loads without sparsearch.

The batch dimension is dynamic. Load it with::

    program = torch.export.load("model.pt2").module()
    logits = program(images)                   # classification
    logits = program(images, tokens, lengths)  # VQA
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from sparsearch.errors import SparsearchError
from sparsearch.safe_io import atomic_file

__all__ = ["PROGRAM_FILE", "ExportError", "export_program"]

PROGRAM_FILE = "model.pt2"


class ExportError(SparsearchError):
    """The model could not be exported, or the exported program disagrees with it."""


@torch.no_grad()
def export_program(model: nn.Module, inputs: tuple[Tensor, ...], path: str | Path, atol: float = 1e-4) -> float:
    """Export ``model`` (eval) for ``inputs`` with a dynamic batch size, save it to ``path`` atomically,
    reload it and return the largest difference from the model's outputs (≤ ``atol`` or ExportError)."""
    from torch.export import Dim, export

    model.eval()
    batch = Dim("batch", min=1, max=1 << 16)
    dynamic = tuple({0: batch} for _ in inputs)
    try:
        with warnings.catch_warnings():  # attributes the layers keep for statistics (last gates)
            warnings.simplefilter("ignore", UserWarning)
            program = export(model, inputs, dynamic_shapes=dynamic)
    except Exception as err:  # torch.export raises many kinds; all mean the same to the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"torch.export failed: {type(err).__name__}: {first}") from None
    path = Path(path)
    with atomic_file(path, "exported program") as tmp:  # keeps the .pt2 suffix torch.export expects
        torch.export.save(program, tmp)
    loaded = torch.export.load(path).module()
    diff = float((loaded(*inputs) - model(*inputs)).abs().max())
    if not diff <= atol:
        raise ExportError(f"the exported program differs from the model by {diff:.3g} (> {atol})")
    return diff
