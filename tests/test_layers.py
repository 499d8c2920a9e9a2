"""The layer order of README's "Layout": import-linter's contracts, and no import cycle at all.

``lint-imports`` checks pyproject.toml's contracts (``[tool.importlinter]``).
The cycle check reads every module's imports from its source, those inside
functions included (a deferred import hides a cycle from Python, not from
the layout), and requires the graph of SpikeReg's modules to have none. Imports
inside functions are allowed in ``spikereg/cli.py`` only, where they keep each
command's start-up fast.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spikereg", "lava_export")
DEFERRED_IMPORTS_ALLOWED = {"spikereg.cli"}  # start-up time: `spikereg --help` imports no torch, h5py or Lava


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` is, or lies in (``spikereg.data.io.Volume`` -> ``spikereg.data.io``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import statement of ``module``."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                    names = [f"{base}.{alias.name}" for alias in child.names]
                for name in names:
                    target = _resolve(name)
                    if target is not None and target != module:
                        found.append((target, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_even_counting_imports_inside_functions() -> None:
    graph = {module: {target for target, _, _ in imports(module)} for module in MODULES}
    assert sum(len(targets) for targets in graph.values()) > 100  # the walk sees the imports
    assert cycles(graph) == []


def test_imports_inside_functions_only_where_they_keep_the_cli_fast() -> None:
    deferred = [f"{MODULES[module].relative_to(ROOT)}:{line}: imports {target}"
                for module in MODULES if module not in DEFERRED_IMPORTS_ALLOWED
                for target, line, inside in imports(module) if inside]
    assert deferred == []


def test_the_cycle_check_sees_a_deferred_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_part_of_spikereg_has_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c)["layers"]
    named = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    tops = {".".join(module.split(".")[:2]) for module in MODULES if module.startswith("spikereg.")}
    assert tops - named == set()
    assert "lava_export" in named


def test_lint_imports_keeps_every_contract() -> None:
    pytest.importorskip("importlinter")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 broken" in done.stdout


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """Why cli.py may import inside functions: loading it (``spikereg --help``) imports none of these."""
    heavy = ("torch", "h5py", "matplotlib", "monai", "lava", "nibabel")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", f"import sys, spikereg.cli; print([m for m in {heavy!r} "
                           "if m in sys.modules])"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
