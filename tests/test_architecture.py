"""The package's shape: the import graph runs only downwards, and the config core stands without torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sparsearch
from sparsearch.choices import EVAL_MODES

ROOT = Path(sparsearch.__file__).parent

# Floors, lowest first (DESIGN.md): a package imports only its own floor and the floors below.
FLOORS = [
    {
        "errors",
        "choices",
        "limits",
        "strict_json",
        "user_code",
        "version",
    },
    {"config", "safe_io"},
    {"layers", "data"},
    {"models"},
    {"cost", "spaces"},
    {"train"},
    {"compact", "study"},
    {"report", "console"},
    {"cli", "__main__", "reference"},
    {"sparsearch"},  # the root package: a façade above every floor (it imports errors and version; the rest lazily)
]
FLOOR = {package: i for i, floor in enumerate(FLOORS) for package in floor}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every sparsearch module ``path`` imports, at the top or inside a function."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    if module == "sparsearch":  # the root's lazy re-exports (its __getattr__) are the façade, not a dependency
        tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {t for t in found if t == "sparsearch" or t.startswith("sparsearch.")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sparsearch"


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_package_has_a_floor():
    packages = {_package(m) for m in _graph()}
    assert packages <= set(FLOOR), f"packages without a floor in DESIGN.md: {sorted(packages - set(FLOOR))}"


def test_no_import_runs_back_up():
    upward = [
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if FLOOR[_package(target)] > FLOOR[_package(source)]
    ]
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(sorted(upward))


def test_no_cycle_between_packages():
    edges = {}
    for source, targets in _graph().items():
        for target in targets:
            a, b = _package(source), _package(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("package", ["config", "cost", "spaces"])
def test_config_core_cost_and_spaces_import_no_torch(package):
    code = f"import sys, sparsearch.{package}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("argv", [["spaces"], ["flops", "default"], ["flops", "default", "--json"]])
def test_spaces_and_flops_commands_import_no_torch(argv):
    code = (
        "import sys\nfrom sparsearch.cli import main\ncode = main(sys.argv[1:])\n"
        "sys.stdout.write('TORCH' if 'torch' in sys.modules else 'NOTORCH')\nsys.exit(code)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    assert out.endswith("NOTORCH")


def test_the_root_package_lists_its_entry_points_and_loads_them_on_first_use():
    code = (
        "import sys, sparsearch\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('sparsearch.')), 'torch' in sys.modules\n"
        "names = [n for n in sparsearch.__all__ if n != '__version__']\n"
        "missing = [n for n in names if not callable(getattr(sparsearch, n))]\n"
        "print(*loaded, missing)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sparsearch.errors', 'sparsearch.version'] False []"  # nothing more until a name is used


# A network family's own modules (its configuration, its modules, its formulas): the only places that may
# ask which family a configuration or a module is. Everything else uses the contract (docs/architecture.md).
FAMILY_MODULES = {
    "resnext": ("config/resnext.py", "models/resnext.py", "cost/resnext.py"),
    "condconv": ("config/condnet.py", "models/condconv_nets.py", "cost/condnet.py"),
    "user": ("config/user.py", "models/user.py", "cost/user.py"),
    "relation": ("config/relation.py", "models/relation.py", "cost/relation.py"),
}
COMPOSES = {"relation": ("resnext",)}  # a family built around another may name that one (its CNN)


def _family_classes() -> dict[str, str]:
    """Every class a family module defines -> its file."""
    owned = {}
    for files in FAMILY_MODULES.values():
        for file in files:
            tree = ast.parse((ROOT / file).read_text())
            owned.update({node.name: file for node in tree.body if isinstance(node, ast.ClassDef)})
    return owned


def _type_questions(tree: ast.AST) -> list[tuple[int, set[str]]]:
    """(line, names) of every isinstance/issubclass call and ``type(x) is/== T`` comparison."""
    found = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            target = node.args[1] if len(node.args) == 2 else None
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Call)
            and getattr(node.left.func, "id", None) == "type"
        ):
            target = ast.Tuple(elts=list(node.comparators))
        if target is not None:
            names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(target) if isinstance(n, ast.Attribute)}
            found.append((node.lineno, names))
    return found


def test_no_code_outside_a_family_asks_which_family_it_holds():
    owned = _family_classes()
    assert {"NetConfig", "CondNetConfig", "UserNetConfig", "SparseResNeXt", "CondNet", "UserNetwork"} <= set(owned)
    family_files = {f for files in FAMILY_MODULES.values() for f in files}
    questions = []
    for path in ROOT.rglob("*.py"):
        where = path.relative_to(ROOT).as_posix()
        for line, names in _type_questions(ast.parse(path.read_text())):
            asked = sorted(n for n in names if n in owned and owned[n] != where)
            if asked and where not in family_files:
                questions.append(f"{where}:{line} asks isinstance of {', '.join(asked)}")
            elif asked:  # inside a family module: only about its own family
                mine = next(k for k, files in FAMILY_MODULES.items() if where in files)
                allowed = {f for k in (mine, *COMPOSES.get(mine, ())) for f in FAMILY_MODULES[k]}
                foreign = [n for n in asked if owned[n] not in allowed]
                questions += [f"{where}:{line} asks isinstance of {n}, another family's" for n in foreign]
    assert not questions, "family branches outside the family's modules:\n" + "\n".join(sorted(questions))


def test_the_evaluation_mode_is_compared_only_by_the_evaluators():
    """``settings.eval`` selects an evaluator (study/evaluators.py) and is never compared elsewhere."""
    compared = []
    for path in ROOT.rglob("*.py"):
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            equality = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)  # membership in the table is validation
            if isinstance(node, ast.Compare) and all(isinstance(op, equality) for op in node.ops):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Attribute) and s.attr == "eval" for s in sides):
                    compared.append(f"{where}:{node.lineno}")
                if any(isinstance(s, ast.Constant) and s.value in EVAL_MODES for s in sides):
                    compared.append(f"{where}:{node.lineno}")
    assert not compared, "evaluation-mode comparisons outside the evaluators: " + ", ".join(sorted(compared))


def test_each_evaluation_mode_of_the_command_line_has_its_evaluator():
    from sparsearch.study.evaluators import EVALUATORS

    assert tuple(EVALUATORS) == EVAL_MODES


def test_the_architecture_page_shows_these_floors_and_names_real_files():
    page = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", page, re.MULTILINE)
    assert [set(re.findall(r"`(\w+)`", packages)) for _, packages in rows] == FLOORS
    named = set(re.findall(r"`((?:sparsearch|tests)/[\w/]+\.py)`", page))
    assert named and all((ROOT.parent / path).is_file() for path in named), sorted(named)
