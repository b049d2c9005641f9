"""The package's shape: the import graph runs only downwards, and the config core stands without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sparsearch

ROOT = Path(sparsearch.__file__).parent

# Floors, lowest first (DESIGN.md): a package imports only its own floor and the floors below.
FLOORS = [
    {
        "errors",
        "choices",
        "limits",
        "sparsearch",
        "user_code",
    },  # "sparsearch": the root package (its version; it imports only errors; its public names load lazily)
    {"config", "safe_io"},
    {"layers", "data"},
    {"models"},
    {"cost", "spaces"},
    {"train"},
    {"compact", "study"},
    {"report", "console"},
    {"cli", "__main__", "reference"},
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
    assert out.strip() == "['sparsearch.errors'] False []"  # nothing above errors until a name is used
