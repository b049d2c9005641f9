"""Exports a deployer loads without sparsearch: a ``torch.export`` program (``model.pt2``) or ONNX
(``model.onnx``), each checked against the model on fresh inputs with a dynamic batch, and the input
contract beside it (``input.json`` and ``README.md``): size, channels, normalisation, classes and, for
VQA, the question vocabulary and how questions become tokens.

Load them with::

    program = torch.export.load("model.pt2").module()
    logits = program(images)                   # classification (with or without torch.no_grad())
    logits = program(images, tokens, lengths)  # VQA

    session = onnxruntime.InferenceSession("model.onnx")
    logits = session.run(None, {"images": images})[0]

The exported network is the model's inference form (:mod:`sparsearch.models.inference`: batch norms folded
into the weights, bias, residual and ReLU fused, each example's paths gathered whole). Top-k blocks export
their sparse execution: only the chosen paths run. For ONNX the per-example 3×3 runs
as nine shifted batched products (ONNX has no convolution whose group count follows the batch), and the
choice of paths is a ranking by comparisons with the same tie rule as in PyTorch, so the exported
network picks the same paths. CondConv layers export as their experts' convolutions weighted per example.
An uncompacted GateConnect network is refused: ``sparsearch prune`` first makes it a plain network.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.choices import EXPORT_FORMATS
from sparsearch.data.base import NORMALISATION
from sparsearch.errors import SparsearchError
from sparsearch.layers import CondConv2d, CondLinear, FusedTopKBottleneck, GateConnectModule, TopKBottleneck
from sparsearch.models.inference import for_inference
from sparsearch.safe_io import atomic_dir, atomic_file, refuse_foreign
from sparsearch.train.model import ModelSpec

__all__ = [
    "CONTRACT_FILE",
    "FORMATS",
    "ONNX_FILE",
    "PROGRAM_FILE",
    "ExportError",
    "example_inputs",
    "export_checkpoint",
    "export_onnx",
    "export_program",
    "input_contract",
    "padded_questions",
    "write_contract",
]

PROGRAM_FILE, ONNX_FILE, CONTRACT_FILE, README_FILE = "model.pt2", "model.onnx", "input.json", "README.md"
FORMATS = dict(zip(EXPORT_FORMATS, (PROGRAM_FILE, ONNX_FILE), strict=True))
CHECK_BATCHES = (1, 3)  # fresh inputs of these batch sizes are compared with the model


class ExportError(SparsearchError):
    """The model could not be exported, or the exported program disagrees with it."""


def input_contract(spec: ModelSpec) -> dict[str, Any]:
    """What the exported model expects and returns, from the checkpoint's record."""
    config = spec.config
    size, channels = config.input_size, getattr(config, "in_channels", 3)
    contract: dict[str, Any] = {
        "format": "sparsearch-export",
        "task": spec.task,
        "inputs": {
            "images": {
                "shape": ["batch", channels, size, size],
                "dtype": "float32",
                "normalisation": f"(pixel / {NORMALISATION['scale']:g} - mean) / std, per channel",
                "mean": [NORMALISATION["mean"]] * channels,
                "std": [NORMALISATION["std"]] * channels,
                "resize": f"{size}×{size} (what the model was trained at)",
            }
        },
        "outputs": {"logits": {"shape": ["batch", len(spec.classes)], "classes": list(spec.classes)}},
    }
    if spec.task == "vqa":
        contract["inputs"]["tokens"] = {
            "shape": ["batch", PROGRAM_WORDS],
            "dtype": "int64",
            "encoding": "lower-case the question, split into [a-z0-9]+ words, map each to its index in "
            f"`vocab` (1 for an unknown word; an empty question is [1]), pad with 0 on the right to {PROGRAM_WORDS} "
            "words",
            "vocab": list(spec.vocab or ()),
        }
        contract["inputs"]["lengths"] = {"shape": ["batch"], "dtype": "int64", "meaning": "words per question"}
        contract["outputs"]["logits"]["meaning"] = "one score per answer (sigmoid: answer probabilities)"
    return contract


def _readme(contract: dict[str, Any], model_file: str) -> str:
    images = contract["inputs"]["images"]
    _, channels, size, _ = images["shape"]
    vqa = contract["task"] == "vqa"
    onnx = model_file.endswith(".onnx")
    if onnx:
        feeds = '{"images": images, "tokens": tokens, "lengths": lengths}' if vqa else '{"images": images}'
        call = f"session.run(None, {feeds})[0]"
    else:
        call = "program(images, tokens, lengths)" if vqa else "program(images)"
    lines = [
        f"# {model_file}",
        "",
        f"A {contract['task']} model exported by sparsearch; it loads without sparsearch.",
        "",
        "```python",
        *(
            ["import onnxruntime", f'session = onnxruntime.InferenceSession("{model_file}")']
            if onnx
            else ["import torch", f'program = torch.export.load("{model_file}").module()']
        ),
        "```",
        "",
        f"- **images**: float32 (batch, {channels}, {size}, {size}); pixels in 0..255 resized to {size}×{size}, then "
        f"`(pixel / 255 - {images['mean'][0]}) / {images['std'][0]}` in every channel.",
    ]
    if vqa:
        lines.append(
            f"- **tokens**, **lengths**: int64; {contract['inputs']['tokens']['encoding']} (vocabulary in "
            f"{CONTRACT_FILE}, {len(contract['inputs']['tokens']['vocab'])} words)."
        )
    classes = contract["outputs"]["logits"]["classes"]
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    lines += [
        f"- **output**: logits (batch, {len(classes)}), in the order of `classes` in {CONTRACT_FILE}: {shown}.",
        f"- Call: `{call}`; any batch size.",
        "",
    ]
    return "\n".join(lines)


def write_contract(directory: Path, spec: ModelSpec, model_file: str, checks: dict[str, Any] | None = None) -> None:
    """``input.json`` (the contract, and the checks the export passed) and ``README.md`` in ``directory``."""
    contract = input_contract(spec) | {"model_file": model_file}
    if checks is not None:
        contract["checks"] = checks
    (directory / CONTRACT_FILE).write_text(json.dumps(contract, indent=2) + "\n")
    (directory / README_FILE).write_text(_readme(contract, model_file))


def _prepared(model: nn.Module, onnx: bool) -> nn.Module:
    """A copy in eval mode with the executions an export takes (see the module docstring)."""
    found = [name for name, m in model.named_modules() if isinstance(m, GateConnectModule)]
    if found:
        raise ExportError(
            f"an uncompacted GateConnect network ({found[0]} learns its connectivity): "
            "run sparsearch prune first; its output exports"
        )
    copied = copy.deepcopy(model).eval()
    for m in copied.modules():
        if isinstance(m, TopKBottleneck):
            m.execution = "sparse"
    shipped = for_inference(copied)  # folded norms, fused epilogues: what eval times
    for m in shipped.modules():
        if isinstance(m, FusedTopKBottleneck):
            m.portable = onnx
        elif isinstance(m, CondConv2d | CondLinear) and onnx:
            m.execution = "experts"
    return shipped


def _dynamic(inputs: tuple[Tensor, ...]) -> tuple[dict[int, Any], ...]:
    """A dynamic batch. Questions have a fixed width (:data:`PROGRAM_WORDS`): export specialises the
    GRU to the length it traces."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1 << 16)
    return tuple({0: batch} for _ in inputs)


PROGRAM_WORDS = 32  # an exported VQA model's question width: pad (or cut) every question to this many words


def _fresh(inputs: tuple[Tensor, ...], batch: int, seed: int) -> tuple[Tensor, ...]:
    """Random inputs shaped like ``inputs`` with ``batch`` rows (tokens: valid ids and lengths)."""
    g = torch.Generator().manual_seed(seed)
    device = inputs[0].device
    images = torch.randn(batch, *inputs[0].shape[1:], generator=g).to(device)
    if len(inputs) == 1:
        return (images,)
    tokens, lengths = inputs[1], inputs[2]
    width, words = tokens.shape[1], int(tokens.max()) + 1
    new_lengths = torch.randint(1, width + 1, (batch,), generator=g)
    new_tokens = torch.randint(1, max(words, 2), (batch, width), generator=g)
    new_tokens[torch.arange(width)[None, :] >= new_lengths[:, None]] = 0
    return images, new_tokens.to(device), new_lengths.to(device, lengths.dtype)


def padded_questions(inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``inputs`` with VQA questions padded (or cut) to :data:`PROGRAM_WORDS` words, as a program takes them."""
    if len(inputs) == 1:
        return inputs
    images, tokens, lengths = inputs
    width = tokens.shape[1]
    tokens = tokens[:, :PROGRAM_WORDS] if width >= PROGRAM_WORDS else F.pad(tokens, (0, PROGRAM_WORDS - width))
    return images, tokens, lengths.clamp_max(PROGRAM_WORDS)


def _failed(tool: str, err: Exception) -> ExportError:
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return ExportError(f"{tool} failed: {type(err).__name__}: {first[:300]}")


def export_program(model: nn.Module, inputs: tuple[Tensor, ...], path: str | Path, atol: float = 1e-4) -> float:
    """Export ``model`` with ``torch.export`` (dynamic batch) to ``path``, atomically; reload it and return the
    largest difference from the model on fresh inputs of batch 1 and 3, called with and without gradients
    (≤ ``atol`` or ExportError)."""
    from torch.export import export

    prepared = _prepared(model, onnx=False)
    try:
        with warnings.catch_warnings(), torch.no_grad():  # attributes the layers keep for statistics
            warnings.simplefilter("ignore", UserWarning)
            program = export(prepared, inputs, dynamic_shapes=_dynamic(inputs))
    except Exception as err:  # torch.export raises many kinds; all mean the same to the user
        raise _failed("torch.export", err) from None
    path = Path(path)
    with atomic_file(path, "exported program") as tmp:  # keeps the .pt2 suffix torch.export expects
        torch.export.save(program, tmp)
    loaded = torch.export.load(path).module()
    diff = 0.0
    for i, batch in enumerate(CHECK_BATCHES):
        fresh = _fresh(inputs, batch, seed=i)
        with torch.no_grad():
            expected = prepared(*fresh)
        with torch.set_grad_enabled(i % 2 == 1):  # a deployer calls it either way
            got = loaded(*fresh)
        diff = max(diff, float((got.detach() - expected).abs().max()))
    if not diff <= atol:
        raise ExportError(f"the exported program differs from the model by {diff:.3g} (> {atol})")
    return diff


def export_onnx(model: nn.Module, inputs: tuple[Tensor, ...], path: str | Path, atol: float = 1e-4) -> float:
    """Export ``model`` to ONNX (dynamic batch) at ``path``, atomically; run it under onnxruntime on fresh
    inputs of batch 1 and 3 and return the largest difference from the model (≤ ``atol`` or ExportError)."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'sparsearch[onnx]'"
        ) from None
    prepared = _prepared(model, onnx=True)
    names = ["images", "tokens", "lengths"][: len(inputs)]
    path = Path(path)
    quiet = logging.getLogger("torch.onnx")  # notes about optional torchvision ops, one per line
    level = quiet.level
    with atomic_file(path, "ONNX model") as tmp:
        try:
            quiet.setLevel(logging.ERROR)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    prepared,
                    inputs,
                    str(tmp),
                    dynamo=True,
                    input_names=names,
                    output_names=["logits"],
                    dynamic_shapes=_dynamic(inputs),
                    external_data=False,
                    verbose=False,
                )
        except Exception as err:  # the exporter raises many kinds; all mean the same to the user
            raise _failed("ONNX export", err) from None
        finally:
            quiet.setLevel(level)
        try:
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        except Exception as err:
            raise _failed("onnxruntime", err) from None
        diff = 0.0
        for i, batch in enumerate(CHECK_BATCHES):
            fresh = _fresh(inputs, batch, seed=i)
            feed = {n: t.numpy() for n, t in zip(names, fresh, strict=True)}
            got = torch.from_numpy(session.run(None, feed)[0])
            with torch.no_grad():
                expected = prepared(*fresh)
            diff = max(diff, float((got - expected).abs().max()))
        if not diff <= atol:
            raise ExportError(f"the ONNX model differs from the model by {diff:.3g} under onnxruntime (> {atol})")
    return diff


def example_inputs(spec: ModelSpec, width: int = PROGRAM_WORDS) -> tuple[Tensor, ...]:
    """Two random examples of what the model takes (VQA: questions ``width`` words wide)."""
    config = spec.config
    images = torch.randn(2, getattr(config, "in_channels", 3), config.input_size, config.input_size)
    if spec.task != "vqa":
        return (images,)
    words = max(len(spec.vocab or ()), 2)
    return images, torch.randint(1, words, (2, width)), torch.tensor([width, max(1, width // 2)])


def _is_export(path: Path) -> bool:
    if not (path / CONTRACT_FILE).is_file():  # a FIFO in its place would block the read
        return False
    try:
        return json.loads((path / CONTRACT_FILE).read_text())["format"] == "sparsearch-export"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def export_checkpoint(path: str | Path, out: str | Path, fmt: str, atol: float = 1e-4) -> dict:
    """Export the checkpoint ``path`` as ``fmt`` (pt2 or onnx) into the directory ``out`` (written whole, or not
    at all): the model file, ``input.json`` and ``README.md``. Returns what ``input.json`` records."""
    from sparsearch.errors import ConfigError
    from sparsearch.train.checkpoint import load_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}; allowed: {', '.join(FORMATS)}")
    refuse_foreign(out, _is_export, "a sparsearch export")
    source = load_checkpoint(path, torch.device("cpu"))
    model, inputs = source.model.cpu().eval(), example_inputs(source.spec)
    with atomic_dir(out, "export") as tmp:
        target = tmp / FORMATS[fmt]
        diff = (export_onnx if fmt == "onnx" else export_program)(model, inputs, target, atol)
        checks = {
            "max_abs_diff": diff,
            "atol": atol,
            "batches": list(CHECK_BATCHES),
            "against": "the checkpoint's model, on fresh random inputs",
            "runtime": "onnxruntime" if fmt == "onnx" else "torch.export.load, with and without gradients",
        }
        write_contract(tmp, source.spec, FORMATS[fmt], checks)
        result = json.loads((tmp / CONTRACT_FILE).read_text())
    return {"source": str(path), "out": str(out), **result}
