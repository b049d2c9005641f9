"""Security: nothing from a file is unpickled or evaluated, and plug-ins run only when named.

Three kinds of proof: the source is scanned for every way Python turns bytes into code (general
unpickling, eval/exec, unsafe YAML, imports by name); files crafted to run code are refused without
running it; and a data plug-in recorded in a checkpoint or a study never runs unless the command line
names it. (Storage passwords: tests/reliability/test_faults.py, which runs a study on PostgreSQL.)
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from sparsearch.cli import main
from sparsearch.cost.budget import Budget

SOURCE = Path(__file__).resolve().parents[2] / "sparsearch"

PLUGIN = """\
from pathlib import Path

import torch

Path(__file__).with_suffix(".ran").write_text("the plug-in ran")  # proof that it was imported


def make(input_size, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(40) % 4
    images = torch.rand(40, 1, 12, 12, generator=g) * 0.2
    images[torch.arange(40), 0, labels, labels] = 1.0
    return (images, labels), (images[:8], labels[:8]), (images[8:16], labels[8:16])
"""


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call with its dotted name: ``pickle.load``, ``torch.load``, ``eval``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            parts.append(f.id if isinstance(f, ast.Name) else "<expr>")  # model.eval() is not eval()
            found.append((".".join(reversed(parts)), node))
    return found


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(SOURCE.parent)): ast.parse(p.read_text(), str(p)) for p in sorted(SOURCE.rglob("*.py"))}


def _problems(path: str, tree: ast.Module) -> list[str]:
    problems = []
    for name, call in _calls(tree):
        keywords = {k.arg: k.value for k in call.keywords}
        if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
            problems.append(f"{path}:{call.lineno}: {name}()")
        if name.endswith(("pickle.load", "pickle.loads", "marshal.loads", "shelve.open", "dill.load")):
            problems.append(f"{path}:{call.lineno}: {name}()")
        if name.startswith("yaml.") and name != "yaml.safe_load" and name.endswith("load"):
            problems.append(f"{path}:{call.lineno}: {name}() (only yaml.safe_load)")
        if name == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                problems.append(f"{path}:{call.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            allow = keywords.get("allow_pickle")
            if not (isinstance(allow, ast.Constant) and allow.value is False):
                problems.append(f"{path}:{call.lineno}: np.load without allow_pickle=False")
        if name.endswith("import_module") and path != "sparsearch/user_code.py":
            problems.append(f"{path}:{call.lineno}: import by name outside sparsearch/user_code.py")
    for node in ast.walk(tree):  # the one unpickler allowed: it must say what it accepts
        if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if "find_class" not in methods:
                problems.append(f"{path}:{node.lineno}: an Unpickler without find_class")
            if path != "sparsearch/data/cifar.py":
                problems.append(f"{path}:{node.lineno}: an Unpickler outside the CIFAR reader")
    return problems


def test_the_source_never_unpickles_evaluates_or_imports_by_name_from_a_file() -> None:
    modules = _modules()
    assert "sparsearch/data/cifar.py" in modules and len(modules) > 50
    assert [problem for path, tree in modules.items() for problem in _problems(path, tree)] == []


def test_the_scan_catches_each_pattern() -> None:
    bad = """\
pickle.loads(b)
torch.load(p)
torch.load(p, weights_only=False)
yaml.load(t)
eval(s)
np.load(f)
importlib.import_module(name)
class U(pickle.Unpickler): pass
model.eval()
yaml.safe_load(t)
torch.load(p, weights_only=True)
"""
    found = _problems("sparsearch/x.py", ast.parse(bad))
    assert [int(p.split(":")[1]) for p in found] == [1, 2, 3, 4, 5, 6, 7, 8, 8]  # none for lines 9-11


def test_a_space_file_with_a_python_tag_is_refused_and_never_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text(
        "name: x\ntarget: !!python/object/apply:os.system ['touch pwned']\nknobs:\n  k: {}\n"
    )
    assert main(["flops", "evil.yaml"]) == 2
    assert "evil.yaml: YAML syntax error at line 2" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A data plug-in module that leaves ``marker_plugin.ran`` when it is imported."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "marker_plugin.py").write_text(PLUGIN)
    marker = tmp_path / "marker_plugin.ran"

    def forget() -> None:  # as in a fresh process: not imported, no marker
        sys.modules.pop("marker_plugin", None)
        marker.unlink(missing_ok=True)

    yield marker, forget
    forget()


def test_a_checkpoint_never_runs_its_recorded_plug_in(plugin, capsys) -> None:
    marker, forget = plugin
    train = ["train", "--space", "gateconnect_cifar", "--data", "marker_plugin:make", "--epochs", "1"]
    assert main([*train, "--steps-per-epoch", "1", "--out", "ckpt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == "marker_plugin:make"
    assert marker.exists()  # named on the command line: it ran
    for command in (["eval", "ckpt"], ["prune", "ckpt", "--out", "pruned"]):
        forget()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "its data is the plug-in 'marker_plugin:make'; plug-ins run only when named" in err
        assert "give --data marker_plugin:make" in err
        assert not marker.exists() and "marker_plugin" not in sys.modules
        assert not Path("pruned").exists()
    forget()
    assert main(["eval", "ckpt", "--data", "marker_plugin:make", "--json"]) == 0  # named: it runs
    assert json.loads(capsys.readouterr().out)["examples"] == 8 and marker.exists()


def test_a_study_never_runs_its_recorded_plug_in(plugin, capsys) -> None:
    from sparsearch.study import StudySettings, open_study
    from tests.study.helpers import TINY

    marker, forget = plugin
    url = "sqlite:///s.db"
    settings = StudySettings(
        space="tiny", space_text=TINY, space_source="tiny.yaml", budget=Budget.flops(10**9), data="marker_plugin:make"
    )
    open_study(url, "plug", settings)
    forget()
    assert main(["worker", "--storage", url, "--study-name", "plug"]) == 2
    err = capsys.readouterr().err
    assert "study 'plug' trains on the plug-in 'marker_plugin:make'; plug-ins run only when named" in err
    assert main(["worker", "--storage", url, "--study-name", "plug", "--data", "digits"]) == 2
    assert "study 'plug' uses 'marker_plugin:make', not --data 'digits'" in capsys.readouterr().err
    Path("tiny.yaml").write_text(TINY)
    resume = ["study", "--budget", "1e9", "--space", "tiny.yaml", "--storage", url, "--study-name", "plug"]
    assert main(resume) == 2  # resuming without naming it: the settings differ, refused before loading data
    assert "exists with data='marker_plugin:make'" in capsys.readouterr().err
    assert not marker.exists() and "marker_plugin" not in sys.modules


FACTORY = """
from pathlib import Path

from torch import nn

Path("marker_factory.ran").write_text("imported")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)

    def forward(self, x):
        out = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())).relu()
        return (self.bn3(self.conv3(out)) + x).relu()


def make(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, num_classes),
    )
"""
FACTORY_SPACE = """
name: marked
target: {factory: "marker_factory:make", input_size: 8, num_classes: 10}
proxy: {dataset: digits, input_size: 8, epochs: 1}
knobs:
  k: {min: 1, max: cardinality}
  routing: {choices: [softmax]}
"""


def test_a_study_or_checkpoint_never_imports_its_recorded_model_factory(tmp_path, monkeypatch, capsys) -> None:
    from sparsearch.config import user

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(user, "_TRUSTED", set())
    (tmp_path / "marker_factory.py").write_text(FACTORY)
    (tmp_path / "space.yaml").write_text(FACTORY_SPACE)
    marker = tmp_path / "marker_factory.ran"

    def forget() -> None:  # as in a fresh process: not imported, not trusted, no marker
        sys.modules.pop("marker_factory", None)
        marker.unlink(missing_ok=True)
        user._TRUSTED.clear()

    url, study = "sqlite:///s.db", ["--study-name", "marked", "--storage", "sqlite:///s.db"]
    train = ["train", "--space", "space.yaml", "--set", "k=2", "--set", "routing=softmax", "--epochs", "1"]
    assert main([*train, "--steps-per-epoch", "2", "--out", "ckpt"]) == 0
    assert main(["study", "--space", "space.yaml", "--budget", "1MFLOPs", "--trials", "2", *study]) == 0
    assert marker.exists()  # the space file was named: its factory ran
    capsys.readouterr()
    for command in (["eval", "ckpt"], ["prune", "ckpt", "--out", "pruned"], ["worker", *study[:2], "--storage", url]):
        forget()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "marker_factory:make" in err and "name it to allow it" in err and "--factory" in err
        assert not marker.exists() and "marker_factory" not in sys.modules
        assert not Path("pruned").exists()
    forget()
    assert main(["--factory", "marker_factory:make", "eval", "ckpt", "--json"]) == 0  # named: it runs
    assert json.loads(capsys.readouterr().out)["examples"] > 0 and marker.exists()
