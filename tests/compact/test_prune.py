"""``sparsearch prune`` end to end: a trained checkpoint in, a verified compacted checkpoint, an exported
program that plain torch loads, and the report out; bad checkpoints and bad options refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sparsearch.cli import main
from sparsearch.compact.export import ExportError
from sparsearch.compact.prune import PruneError, PruneSettings, check_accuracy, check_equivalence, prune_checkpoint
from sparsearch.train import evaluate_checkpoint
from sparsearch.train.checkpoint import CheckpointError, load_checkpoint

QUICK = ["--space", "gateconnect_cifar", "--data", "digits", "--epochs", "1", "--steps-per-epoch", "6"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prune") / "run"
    assert main(["train", *QUICK, "--set", "fan_in=1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pruned(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pruned") / "compact"
    report = prune_checkpoint(trained, out, PruneSettings(calib_batches=2), CPU)
    return out, report


def test_prune_writes_a_verified_compacted_checkpoint(trained: Path, pruned: tuple[Path, dict]) -> None:
    out, report = pruned
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "model.pt2",
        "report.json",
        "report.md",
        "connectivity.png",
        "input.json",
        "README.md",
    }
    assert json.loads((out / "report.json").read_text()) == report
    eq = report["equivalence"]
    assert eq["exact"] and eq["passed"] and eq["max_abs_diff"] <= 1e-4
    assert report["accuracy"]["before"] == report["accuracy"]["compacted"]
    b, a = report["costs"]["before"], report["costs"]["after"]
    assert a["params"] <= b["params"] and a["network_executed_flops"] < b["network_executed_flops"]
    assert a["model_flops"] == a["network_executed_flops"]  # FlopCounterMode agrees with the analytic count
    modules = report["graph"]["modules"]
    assert [m["block"] for m in modules] == ["stage1.0", "stage2.0", "stage3.0"]  # the proxy: one module a stage
    assert modules[-1]["dead"] == []  # the head sums the last module's branches
    assert report["graph"]["dead"] == sum(len(m["dead"]) for m in modules)
    assert [r["op"] for r in report["removals"]] == ["branches"] * 3
    assert (out / "connectivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| parameters |" in md and "![learned connectivity](connectivity.png)" in md
    # The compacted checkpoint loads as any checkpoint and computes what the source computes.
    source, compact = load_checkpoint(trained), load_checkpoint(out)
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert (compact.model(x) - source.model(x)).abs().max() <= 1e-4
    result = evaluate_checkpoint(out, CPU, split="val", latency_batch=4)
    assert result["network_executed_flops"] == a["network_executed_flops"]
    assert result["accuracy"] == report["accuracy"]["compacted"]


def test_the_exported_program_loads_where_sparsearch_cannot_be_imported(pruned: tuple[Path, dict], tmp_path) -> None:
    out, _ = pruned
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = load_checkpoint(out).model(x)
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["sparsearch"] = None  # any import of sparsearch now fails
        try:
            import sparsearch
        except ImportError:
            pass
        else:
            raise SystemExit("sparsearch was importable")
        import torch
        io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
        program = torch.export.load({str(out / "model.pt2")!r}).module()
        diff = (program(io["x"]) - io["expected"]).abs().max().item()
        assert diff <= 1e-4, diff
        assert program(io["x"][:1]).shape == (1, 10)  # the batch size is dynamic
        print("ok", diff)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_prune_through_the_cli_with_channels(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    args = ["prune", str(trained), "--out", str(out), "--calib-batches", "1", "--channels", "0.5", "--json"]
    assert main([*args, "--round-to", "2", "--no-export"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["channels"]["ratio"] == 0.5 and "final" in report["accuracy"]
    assert "export" not in report and not (out / "model.pt2").exists()
    after = report["costs"]["after"]
    assert after["model_flops"] == after["network_executed_flops"]
    compact = load_checkpoint(out)  # the channel edits rebuild the pruned shapes
    assert sum(p.numel() for p in compact.model.parameters()) == after["params"]
    # Pruning again over the previous output replaces it.
    assert main(["prune", str(trained), "--out", str(out), "--calib-batches", "1", "--no-export"]) == 0
    assert "channels" not in json.dumps(json.loads((out / "config.json").read_text())["compaction"])


EXPERTS_SPACE = """\
name: tiny-experts
description: CLEVR modular CNN with CondConv paths, proxy on digits at 16x16
target: {model: clevr_cnn, input_size: 32}
proxy: {dataset: digits, input_size: 16, width: 0.5, depth: [1, 1, 1], epochs: 1, num_classes: 10}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {choices: [softmax]}
  experts: {choices: [1, 2, 4]}
"""


@pytest.fixture(scope="module")
def trained_experts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experts")
    (root / "space.yaml").write_text(EXPERTS_SPACE)
    out = root / "run"
    args = ["train", "--space", str(root / "space.yaml"), "--epochs", "1", "--steps-per-epoch", "20"]
    assert main([*args, "--set", "k=2", "--set", "experts=4", "--set", "routing=softmax", "--out", str(out)]) == 0
    return out


def test_usage_based_removals_are_listed_with_their_evidence(trained_experts: Path, tmp_path: Path) -> None:
    # The accuracy criterion has its own test; this one is about what is removed and recorded.
    settings = PruneSettings(calib_batches=2, max_drop=1.0)
    report = prune_checkpoint(trained_experts, tmp_path / "c", settings, CPU)
    assert report["graph"] is None  # no GateConnect module: nothing to draw
    assert not (tmp_path / "c" / "connectivity.png").exists()
    for r in report["removals"]:
        assert r["op"] in ("paths", "experts", "fold") and r["summary"]
        if r["op"] == "paths":
            assert all(r["evidence"]["selected"][c] == 0 for c in r["evidence"]["removed"])
    assert report["equivalence"]["passed"]
    a = report["costs"]["after"]
    assert sum(p.numel() for p in load_checkpoint(tmp_path / "c").model.parameters()) == a["params"]


def test_the_checks_fail_loudly() -> None:
    check_equivalence(True, 5e-5, 1e-4)
    check_equivalence(False, 3.0, 1e-4)  # inexact removals are judged on accuracy instead
    with pytest.raises(PruneError, match="equivalence check failed"):
        check_equivalence(True, 2e-4, 1e-4)
    with pytest.raises(PruneError, match="equivalence check failed"):
        check_equivalence(True, float("nan"), 1e-4)
    check_accuracy(False, 0.80, 0.795, 0.01)
    check_accuracy(True, 0.80, 0.50, 0.01)
    with pytest.raises(PruneError, match=r"usage-based removals cost 0\.0200"):
        check_accuracy(False, 0.80, 0.78, 0.01)


def test_a_failure_midway_writes_nothing(trained: Path, tmp_path: Path, monkeypatch) -> None:
    # The export is the last step before the output moves into place: fail it (as a full disk would).
    import sparsearch.compact.prune as prune

    def broken(*args, **kwargs):
        raise ExportError("torch.export failed: simulated")

    monkeypatch.setattr(prune, "export_program", broken)
    out = tmp_path / "never"
    with pytest.raises(ExportError, match="simulated"):
        prune_checkpoint(trained, out, PruneSettings(calib_batches=1), CPU)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_checkpoints_are_refused(trained: Path, pruned: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = pruned
    with pytest.raises(CheckpointError, match="already a compacted model"):
        prune_checkpoint(out, tmp_path / "again", PruneSettings(), CPU)
    config = json.loads((out / "config.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "config.json"):
        (broken / name).write_bytes((out / name).read_bytes())
    config["compaction"]["edits"][0]["keep"] = [0, 0]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot rebuild the compacted model"):
        load_checkpoint(broken)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        prune_checkpoint(trained, other, PruneSettings(), CPU)
    assert (other / "keep.txt").read_text() == "mine"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsearch", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "nowhere", "--out", "OUT"], "not a checkpoint directory"),
        (["prune", "TRAINED", "--out", "OUT", "--channels", "1.5"], "channels=1.5 must be a ratio in (0, 1)"),
        (["prune", "TRAINED", "--out", "OUT", "--calib-batches", "0"], "calib-batches=0 must be a positive integer"),
        (["prune", "TRAINED", "--out", "OUT", "--importance", "taylor"], "'taylor' is not one of 'l1', 'l2', 'random'"),
        (["prune", "TRAINED", "--out", "OUT", "--data", "imagenet"], "unknown data 'imagenet'"),
        (["prune", "TRAINED", "--out", "TRAINED"], "is the source checkpoint"),
    ],
)
def test_bad_prune_input_is_one_line_and_exit_2(trained: Path, tmp_path: Path, args, message) -> None:
    args = [str(trained) if a == "TRAINED" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    done = _cli(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
