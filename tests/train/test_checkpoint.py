from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sparsearch.train.checkpoint as checkpoint_module
from sparsearch.errors import WriteError
from sparsearch.spaces import get_space
from sparsearch.train import (
    CheckpointError,
    ModelSpec,
    build_task_model,
    load_checkpoint,
    load_weights_file,
    save_checkpoint,
)
from tests.cifar_files import RunsCode


def _model() -> tuple[torch.nn.Module, ModelSpec]:
    config = get_space("gateconnect_cifar").proxy_config({"stage2.fan_in": 2})
    spec = ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)
    return build_task_model(spec), spec


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, spec = _model()
    return save_checkpoint(tmp_path / "ckpt", model, spec, metrics={"val_accuracy": 0.5})


def test_save_then_load_gives_the_same_tensors(saved: Path) -> None:
    loaded = load_checkpoint(saved)
    again = load_checkpoint(saved)
    for key, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[key])
    assert loaded.meta.metrics == {"val_accuracy": 0.5}
    assert not loaded.model.training


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"weight": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: it needs pickle code to load"):
        load_weights_file(path)
    assert not marker.exists()


def test_a_plain_state_dict_pt_file_is_read(tmp_path: Path) -> None:
    model, _ = _model()
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    state = load_weights_file(tmp_path / "plain.pth")
    assert state.keys() == model.state_dict().keys()


def test_truncated_weights_are_refused(saved: Path) -> None:
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated or changed"):
        load_checkpoint(saved)


def test_a_config_that_does_not_match_the_weights_names_the_first_mismatch(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["model"]["config"]["stages"][0]["width"] = 3  # narrower paths than the weights were trained with
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError,
        match=r"config\.json does not match the weights: blocks\.stage1_0\.reduce\.weight "
        r"has shape \(32, 8, 1, 1\) in the weights",
    ):
        load_checkpoint(saved)


def test_a_config_naming_an_unknown_field_is_refused(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["model"]["config"]["stages"][0]["colour"] = "red"
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown field 'colour'"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "config.json").unlink(), r"not a sparsearch checkpoint \(config.json is missing\)"),
        (lambda p: (p / "model.safetensors").unlink(), r"model.safetensors is missing"),
        (lambda p: (p / "config.json").write_text("{not json"), "config.json: not valid JSON"),
        (lambda p: (p / "config.json").write_text('{"format": "other"}'), "not a sparsearch checkpoint"),
    ],
    ids=["no-config", "no-weights", "bad-json", "other-format"],
)
def test_damaged_checkpoints_are_refused(saved: Path, damage, message: str) -> None:
    damage(saved)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)


def test_a_path_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such directory"):
        load_checkpoint(tmp_path / "absent")


def test_save_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    model, spec = _model()
    with pytest.raises(CheckpointError, match="exists and is not a sparsearch checkpoint"):
        save_checkpoint(other, model, spec)
    assert (other / "todo.txt").read_text() == "keep me"


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_intact(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_tensors", disk_full)
    model, spec = _model()
    with pytest.raises(WriteError, match=r"cannot write the checkpoint \(No space left on device\); the previous"):
        save_checkpoint(saved, model, spec)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]  # no temporary directory left
    load_checkpoint(saved)


def test_saving_over_a_checkpoint_replaces_it(saved: Path) -> None:
    model, spec = _model()
    save_checkpoint(saved, model, spec, metrics={"val_accuracy": 0.9})
    assert load_checkpoint(saved).meta.metrics == {"val_accuracy": 0.9}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]
