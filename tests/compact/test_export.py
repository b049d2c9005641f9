"""``sparsearch export``: pt2 and ONNX files a deployer runs without sparsearch, equal to the checkpoint's
model on fresh inputs with a dynamic batch, with the input contract beside them; top-k blocks export
their sparse execution and pick the same paths (ties included); what cannot export is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsearch.cli import main
from sparsearch.compact.export import ExportError, export_checkpoint, export_onnx, export_program
from sparsearch.compact.prune import PruneSettings, prune_checkpoint
from sparsearch.config import layout
from sparsearch.spaces import get_space
from sparsearch.train import ModelSpec, build_task_model, save_checkpoint

CPU = torch.device("cpu")
onnxruntime = pytest.importorskip("onnxruntime")


def _checkpoint(tmp: Path, name: str, config, task: str = "classification") -> Path:
    torch.manual_seed(0)
    if task == "vqa":
        vqa = {"hidden": 16, "embed_dim": 8, "dropout": 0.0}
        spec = ModelSpec.for_data(config, "vqa", tuple("abcde"), 3, ("<pad>", "<unk>", "what", "shape"), vqa)
    else:
        spec = ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)
    model = build_task_model(spec)
    with torch.no_grad():  # trained-looking batch norms: statistics away from 0 and 1
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(tmp / name, model, spec, data={"spec": "digits"}, training={"seed": 0})


TOPK = layout("resnext", depth=[1, 1, 1, 1], cardinality=8, width=2, input_size=32, k=3, routing="softmax")


CONDCONV = layout("cc_mobilenet_v1", width=0.25, input_size=32, experts=4, routing="softmax")
VQA = get_space("default").proxy_config({"conv3.k": 8, "conv3.routing": "softmax"})


@pytest.mark.parametrize(
    ("name", "config", "task", "fmt"),
    [
        ("topk", TOPK, "classification", "pt2"),
        ("topk", TOPK, "classification", "onnx"),
        ("condconv", CONDCONV, "classification", "pt2"),
        ("condconv", CONDCONV, "classification", "onnx"),
        ("vqa", VQA, "vqa", "pt2"),
        # 17 s: the VQA model under onnxruntime; its pt2 export and the other onnx exports run in `make test`
        pytest.param("vqa", VQA, "vqa", "onnx", marks=pytest.mark.slow),
    ],
    ids=["topk-pt2", "topk-onnx", "condconv-pt2", "condconv-onnx", "vqa-pt2", "vqa-onnx"],
)
def test_exports_equal_the_checkpoint_and_carry_their_contract(tmp_path, fmt, name, config, task) -> None:
    ckpt = _checkpoint(tmp_path, name, config, task)
    result = export_checkpoint(ckpt, tmp_path / "out", fmt)
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {f"model.{fmt}", "input.json", "README.md"}
    assert result["checks"]["max_abs_diff"] <= 1e-4 and result["checks"]["batches"] == [1, 3]
    contract = json.loads((tmp_path / "out" / "input.json").read_text())
    images = contract["inputs"]["images"]
    assert images["shape"][1:] == [3, config.input_size, config.input_size]
    assert images["mean"] == [0.5] * 3 and images["std"] == [0.25] * 3
    assert contract["outputs"]["logits"]["classes"] == (list("abcde") if task == "vqa" else list("0123456789"))
    if task == "vqa":
        assert contract["inputs"]["tokens"]["vocab"] == ["<pad>", "<unk>", "what", "shape"]
    assert "(pixel / 255 - 0.5) / 0.25" in (tmp_path / "out" / "README.md").read_text()


def test_a_program_runs_with_and_without_gradients(tmp_path) -> None:
    ckpt = _checkpoint(tmp_path, "topk", TOPK)
    export_checkpoint(ckpt, tmp_path / "out", "pt2")
    program = torch.export.load(str(tmp_path / "out" / "model.pt2")).module()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = program(x)
    assert torch.allclose(program(x), expected, atol=1e-6)  # outside no_grad: once failed on baddbmm(out=)


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_onnx_picks_the_same_paths_when_every_score_ties(tmp_path) -> None:
    """Zero gate weights: every path scores the same, so only the tie rule chooses; ONNX must agree."""
    model = build_task_model(ModelSpec.for_data(TOPK, "classification", tuple("0123456789"), 3)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.out_features == 8:  # the gates' logits
                m.weight.zero_()
                m.bias.zero_()
    x = torch.randn(2, 3, 32, 32)
    assert export_onnx(model, (x,), tmp_path / "m.onnx") <= 1e-4
    assert export_program(model, (x,), tmp_path / "m.pt2") <= 1e-4


def test_an_uncompacted_gateconnect_network_is_refused_and_its_compacted_form_exports(tmp_path) -> None:
    config = get_space("gateconnect_digits").proxy_config({"stage2.fan_in": 2, "stage3.fan_in": 2})
    ckpt = _checkpoint(tmp_path, "gc", config)
    with pytest.raises(ExportError, match=r"uncompacted GateConnect network .* run sparsearch prune first"):
        export_checkpoint(ckpt, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
    prune_checkpoint(ckpt, tmp_path / "small", PruneSettings(calib_batches=1, max_drop=1.0), CPU)
    assert export_checkpoint(tmp_path / "small", tmp_path / "out", "onnx")["checks"]["max_abs_diff"] <= 1e-4


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_the_command_line(tmp_path, capsys) -> None:
    ckpt = _checkpoint(tmp_path, "topk", TOPK)
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_file"] == "model.onnx"
    assert main(["export", str(ckpt), "--format", "tflite", "--out", str(tmp_path / "t")]) == 2
    assert "Invalid value for '--format': 'tflite' is not one of 'pt2', 'onnx'" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("fmt", ["pt2", pytest.param("onnx", marks=pytest.mark.slow)])  # onnx: 15 s, test-slow
def test_exports_equal_the_network_in_training_form(tmp_path, fmt) -> None:
    """The export runs the inference form (folded norms, fused epilogues); what it returns is what the
    network as trained returns, CondConv experts and a projection shortcut included."""
    config = layout(
        "resnext", depth=[1, 1, 1, 1], cardinality=8, width=2, input_size=32, k=3, routing="sigmoid", experts=2
    )
    model = build_task_model(ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    export = export_program if fmt == "pt2" else export_onnx
    export(model, (x,), tmp_path / f"m.{fmt}")
    fresh = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(fresh)
    if fmt == "pt2":
        got = torch.export.load(str(tmp_path / "m.pt2")).module()(fresh)
    else:
        session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: fresh.numpy()})[0])
    assert (got.detach() - expected).abs().max().item() <= 1e-4
