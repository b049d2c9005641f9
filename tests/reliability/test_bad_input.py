"""The bad-input catalogue: every case is refused with one line on stderr, exit code 2, no traceback,
and nothing written: the working directory holds the same files, with the same bytes, afterwards.

Each case runs the real command line (``sparsearch.cli.main``) in a fresh working directory that holds
the case's inputs: a space file, a damaged checkpoint, a data directory, a plug-in module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparsearch.cli import main
from sparsearch.cost.budget import Budget
from sparsearch.spaces import get_space
from sparsearch.train import ModelSpec, build_task_model, save_checkpoint
from tests.cifar_files import RunsCode

SPACE = """\
name: tiny
target: {model: clevr_cnn, input_size: 32}
proxy: {dataset: digits, input_size: 16, width: 0.5, depth: [1, 1, 1]}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {choices: [softmax, relu_l1]}
"""
GATECONNECT = """\
name: gc
target: {model: gateconnect_cifar, depth: 20, width: 2, num_classes: 10}
knobs:
  fan_in: {choices: [1, 2]}
"""
PAGE = Path(__file__).resolve().parents[2] / "docs" / "guarantees.md"
TRAIN = ["train", "--space", "gateconnect_cifar", "--epochs", "1", "--steps-per-epoch", "1", "--out", "run"]
STUDY = ["study", "--budget", "50GFLOPs"]
PLUGIN = """\
import torch

def make(input_size, seed):
    return "not datasets"
"""


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with a digest of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An (untrained) GateConnect checkpoint on digits, as `sparsearch train` writes it."""
    config = get_space("gateconnect_cifar").proxy_config({"stage2.fan_in": 2})
    spec = ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)
    out = tmp_path_factory.mktemp("ckpt") / "ckpt"
    return save_checkpoint(out, build_task_model(spec), spec, data={"spec": "digits"}, training={"seed": 0})


def _space(text: str) -> Callable[[Path], None]:
    return lambda d: (d / "space.yaml").write_text(text)


def _copy(damage: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    def setup(d: Path, ckpt: Path) -> None:
        shutil.copytree(ckpt, d / "ckpt")
        damage(d / "ckpt")

    return setup


def _truncate(p: Path) -> None:
    weights = p / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _mismatch(p: Path) -> None:
    meta = json.loads((p / "config.json").read_text())
    meta["model"]["config"]["stages"][0]["width"] = 3
    (p / "config.json").write_text(json.dumps(meta))


def _not_a_checkpoint(p: Path) -> None:
    for f in p.iterdir():
        f.unlink()
    (p / "notes.txt").write_text("mine")


def _garbage_cifar(d: Path) -> None:
    (d / "cifar").mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (d / "cifar" / name).write_text("these are not pickled arrays")
    (d / "cifar" / "batches.meta").write_text("nor is this")


# (id, setup(workdir) or None, arguments, what the line says)
CASES: list[tuple[str, Callable | None, list[str], str]] = [
    # budgets, counts, names
    ("budget -1", None, ["study", "--budget", "-1"], "budget '-1' must be a positive, finite amount"),
    ("budget 0", None, ["study", "--budget", "0"], "budget '0' must be a positive, finite amount"),
    ("budget abc", None, ["study", "--budget", "abc"], "budget 'abc' not understood; write e.g. 50GFLOPs"),
    ("budget 50GB", None, ["study", "--budget", "50GB"], "budget '50GB' not understood"),
    ("budget 1e400", None, ["study", "--budget", "1e400"], "budget '1e400' must be a positive, finite amount"),
    ("budget empty", None, ["study", "--budget", ""], "budget '' not understood"),
    ("budget missing", None, ["study"], "Missing option '--budget'"),
    ("flops budget", None, ["flops", "default", "--budget", "-1"], "budget '-1' must be a positive"),
    ("trials 0", None, [*STUDY, "--trials", "0"], "trials=0 must be a positive integer"),
    ("study epochs -2", None, [*STUDY, "--epochs", "-2"], "epochs=-2 must be a positive integer"),
    ("train epochs -1", None, [*TRAIN[:3], "--epochs", "-1", "--out", "run"], "epochs=-1 must be a positive integer"),
    ("jobs 0", None, [*STUDY, "--jobs", "0"], "jobs=0 must be a positive integer"),
    ("timeout 0", None, [*STUDY, "--timeout", "0"], "--timeout 0.0: give a positive number of seconds"),
    ("unknown space", None, [*STUDY, "--space", "nope"], "unknown space 'nope'; known: clevr,"),
    (
        "unknown sampler",
        None,
        [*STUDY, "--sampler", "cmaes"],
        "Invalid value for '--sampler': 'cmaes' is not one of 'tpe', 'nsga2', 'gp', 'random'",
    ),
    (
        "unknown eval",
        None,
        [*STUDY, "--eval", "guess"],
        "Invalid value for '--eval': 'guess' is not one of 'supernet', 'train'",
    ),
    ("unknown routing", None, ["flops", "clevr", "--set", "routing=fast"], "routing='fast'"),
    ("value out of range", None, ["flops", "default", "--set", "conv3.k=40"], "conv3.k=40 is not allowed"),
    ("unknown command", None, ["bogus"], "No such command 'bogus'."),
    ("space without k", None, [*STUDY, "--space", "condconv_mobilenet_v1"], "searches no k or fan-in"),
    # search-space YAML, through `flops` and through `study`
    ("yaml syntax", _space(SPACE.replace("knobs:", "knobs: [")), ["flops", "space.yaml"], "YAML syntax error at line"),
    (
        "yaml unknown key",
        _space(SPACE + "colour: red\n"),
        ["flops", "space.yaml"],
        "space.yaml: colour: unknown key; allowed:",
    ),
    (
        "yaml wrong type",
        _space(SPACE.replace("input_size: 32", "input_size: big")),
        ["flops", "space.yaml"],
        "space.yaml: target: input_size='big' must be a positive integer",
    ),
    (
        "yaml k > C",
        _space(SPACE.replace("max: cardinality", "max: 40")),
        [*STUDY, "--space", "space.yaml"],
        "space.yaml: knobs.k.max: k=40 exceeds cardinality 12 in stage conv2",
    ),
    (
        "yaml fan-in > C",
        _space(GATECONNECT.replace("[1, 2]", "[1, 9]")),
        ["flops", "space.yaml"],
        "fan_in=9 exceeds cardinality 8",
    ),
    (
        "yaml experts 0",
        _space(SPACE + "  experts: {choices: [0]}\n"),
        ["flops", "space.yaml"],
        "space.yaml: knobs.experts.choices: 0 is not a positive integer",
    ),
    (
        "yaml experts 2.5",
        _space(SPACE + "  experts: {choices: [2.5]}\n"),
        ["flops", "space.yaml"],
        "space.yaml: knobs.experts.choices: 2.5 is not a positive integer",
    ),
    (
        "yaml experts text",
        _space(SPACE + "  experts: {choices: [many]}\n"),
        ["flops", "space.yaml"],
        "space.yaml: knobs.experts.choices: 'many' is not a positive integer",
    ),
    (
        "yaml empty stage list",
        _space(SPACE.replace("{per: stage, min: 1", "{stages: [], min: 1")),
        [*STUDY, "--space", "space.yaml"],
        "space.yaml: knobs.k.stages: expected a non-empty list",
    ),
    ("yaml empty file", _space(""), ["flops", "space.yaml"], "space.yaml: (top level): expected a mapping"),
    ("yaml missing file", None, ["flops", "missing.yaml"], "missing.yaml: cannot read the space file"),
    # data
    ("data unknown", None, [*TRAIN, "--data", "imagenet"], "unknown data 'imagenet'"),
    ("data missing path", None, [*TRAIN, "--data", "cifar10:nowhere"], "data cifar10:nowhere: no such directory"),
    (
        "data wrong format",
        _garbage_cifar,
        [*TRAIN, "--data", "cifar10:cifar"],
        "cifar/data_batch_1: not a CIFAR python-format file",
    ),
    (
        "plug-in does not import",
        None,
        [*TRAIN, "--data", "no_such_module_xyz:make"],
        "data plug-in 'no_such_module_xyz:make': cannot import 'no_such_module_xyz' (ModuleNotFoundError",
    ),
    (
        "plug-in fails to import",
        lambda d: (d / "broken_plugin.py").write_text("def make(:\n"),
        [*TRAIN, "--data", "broken_plugin:make"],
        "cannot import 'broken_plugin' (SyntaxError",
    ),
    (
        "plug-in wrong type",
        lambda d: (d / "wrong_plugin.py").write_text(PLUGIN),
        [*TRAIN, "--data", "wrong_plugin:make"],
        "data plug-in 'wrong_plugin:make': must return (train, val) or (train, val, test)",
    ),
    (
        "plug-in without the function",
        lambda d: (d / "wrong_plugin.py").write_text(PLUGIN),
        [*TRAIN, "--data", "wrong_plugin:absent"],
        "'wrong_plugin' has no function 'absent'",
    ),
    ("study data unknown", None, [*STUDY, "--data", "imagenet"], "unknown data 'imagenet'"),
    ("study data missing path", None, [*STUDY, "--data", "cifar10:nowhere"], "no such directory"),
    ("study device unknown", None, [*STUDY, "--device", "tpu"], "device 'tpu'"),
    # storage
    ("storage not a URL", None, [*STUDY, "--storage", "studies.db"], "storage 'studies.db' is not a URL"),
    (
        "storage cannot connect",
        None,
        [*STUDY, "--storage", "postgresql://user:s3cret@127.0.0.1:9/nowhere", "--trials", "1"],
        "storage postgresql://user:***@127.0.0.1:9/nowhere: cannot connect",
    ),
    (
        "storage cannot be created",
        None,
        [*STUDY, "--storage", "sqlite:////proc/sparsearch/s.db"],
        "storage sqlite:////proc/sparsearch/s.db: cannot create /proc/sparsearch (No such file or directory)",
    ),
    ("report unknown study", None, ["report", "ghost"], "no study 'ghost': studies/ghost.db does not exist"),
    (
        "worker unknown study",
        lambda d: None,
        ["worker", "--storage", "sqlite:///:memory:", "--study-name", "ghost"],
        "no study named 'ghost' in sqlite:///:memory:",
    ),
]

# Checkpoint cases: each command that reads a checkpoint, on each kind of damage.
DAMAGE = {
    "no config": lambda p: (p / "config.json").unlink(),
    "no weights": lambda p: (p / "model.safetensors").unlink(),
    "truncated safetensors": _truncate,
    "config/weights mismatch": _mismatch,
    "not a checkpoint": _not_a_checkpoint,
    "config not JSON": lambda p: (p / "config.json").write_text("{not json"),
}
MESSAGES = {
    "no config": "not a sparsearch checkpoint (config.json is missing)",
    "no weights": "model.safetensors is missing",
    "truncated safetensors": "model.safetensors: truncated or changed",
    "config/weights mismatch": "config.json does not match the weights: blocks.stage1_0.reduce.weight has shape",
    "not a checkpoint": "not a sparsearch checkpoint (config.json is missing)",
    "config not JSON": "config.json: not valid JSON",
}
COMMANDS = {
    "eval": ["eval", "ckpt"],
    "prune": ["prune", "ckpt", "--out", "pruned"],
    "train --init": [*TRAIN, "--data", "digits", "--init", "ckpt"],
}


def page_section(title: str) -> list[str]:
    """The lines of the guarantees page's section ``## title``."""
    text = PAGE.read_text().split(f"\n## {title}\n", 1)[1]
    return text.split("\n## ", 1)[0].splitlines()


def _page_table(columns: int, section: str = "Bad input") -> dict[str, list[str]]:
    """Rows of the tables of a section of the guarantees page with ``columns`` cells: the case, and the
    fragments of the message it documents (the text between ``...``)."""
    rows = {}
    for line in page_section(section):
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == columns and cells[0] not in ("Case", "Damage"):
            said = cells[-1].replace("\\*", "*")
            rows[cells[0]] = [f.strip() for f in said.split("...") if f.strip()]
    return rows


def _documented(case: str, err: str, columns: int) -> None:
    fragments = _page_table(columns).get(case)
    assert fragments, f"{case!r} is not in the table of {PAGE.name}"
    assert [f for f in fragments if f not in err] == [], err


def _refused(args: list[str], workdir: Path, capsys) -> str:
    before = snapshot(workdir)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert snapshot(workdir) == before, "something was written"
    return err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # plug-in modules written by a case import from here
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield tmp_path
    for name in ("broken_plugin", "wrong_plugin"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("setup", "args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(setup, args, message, workdir, capsys, request) -> None:
    if setup is not None:
        setup(workdir)
    err = _refused(args, workdir, capsys)
    assert message in err, err
    assert "s3cret" not in err
    _documented(request.node.callspec.id, err, 3)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_damaged_checkpoints_are_refused_by_every_command(command, damage, checkpoint, workdir, capsys) -> None:
    _copy(DAMAGE[damage])(workdir, checkpoint)
    err = _refused(COMMANDS[command], workdir, capsys)
    assert MESSAGES[damage] in err, err
    _documented(damage, err, 2)


def test_a_missing_checkpoint_is_refused(workdir, capsys) -> None:
    assert "not a checkpoint directory" in _refused(["eval", "nowhere"], workdir, capsys)


def test_a_pt_file_whose_pickle_would_run_code_is_refused_and_the_code_never_runs(workdir, capsys) -> None:
    marker = workdir.parent / f"{workdir.name}-ran"
    torch.save({"stem.0.weight": RunsCode(marker)}, workdir / "evil.pt")
    err = _refused([*TRAIN, "--data", "digits", "--init", "evil.pt"], workdir, capsys)
    assert "evil.pt: refused: it needs pickle code to load" in err
    assert not marker.exists()


def test_a_study_name_that_exists_with_another_space_is_refused(workdir, capsys) -> None:
    from sparsearch.study import StudySettings, open_study

    (workdir / "space.yaml").write_text(SPACE)
    settings = StudySettings(
        space="tiny", space_text=SPACE, space_source="space.yaml", budget=Budget.flops(50 * 10**9), trials=5
    )
    url = f"sqlite:///{workdir}/s.db"
    study = open_study(url, "mine", settings).study
    trials = [(t.number, t.state, t.params) for t in study.get_trials()]
    err = _refused([*STUDY, "--space", "clevr", "--storage", url, "--study-name", "mine"], workdir, capsys)
    assert "study 'mine' exists with space='tiny'" in err, err
    study = open_study(url, "mine", settings).study
    assert [(t.number, t.state, t.params) for t in study.get_trials()] == trials


def test_the_page_lists_exactly_the_cases() -> None:
    assert sorted(_page_table(3)) == sorted(c[0] for c in CASES)
    assert sorted(_page_table(2)) == sorted(DAMAGE)
