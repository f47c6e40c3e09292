"""Imports run one way: every module of the package imports only modules below it in :data:`LAYERS`.

The source is read with ``ast``, not imported: module-level and function-level imports, relative and
absolute, each resolved to the package module it loads. A package's ``__init__.py`` re-exports its
submodules, so it sits just above them (``qiskit_qnas.engines`` above ``engines.qnn``; the top-level
``qiskit_qnas`` above ``estimator``, the last module its re-exports need). Importing a submodule runs its
parent package first, so ``from .engines.statevector import ...`` also imports ``qiskit_qnas.engines``;
the top-level package, run before every submodule by Python itself, is not counted that way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "qiskit_qnas"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

#: every module of the package, bottom first: each imports only modules before it (README "Development")
LAYERS = [
    "qiskit_qnas._version",
    "qiskit_qnas.validation",
    "qiskit_qnas.spec",
    "qiskit_qnas.run_schema",
    "qiskit_qnas.seeds",
    "qiskit_qnas.isa",
    "qiskit_qnas.memory",
    "qiskit_qnas.datasets",
    "qiskit_qnas.engines.statevector.threads",
    "qiskit_qnas.engines.statevector.expressions",
    "qiskit_qnas.engines.statevector.gates",
    "qiskit_qnas.engines.statevector.preparation",
    "qiskit_qnas.engines.statevector.adjoint",
    "qiskit_qnas.engines.statevector.program",
    "qiskit_qnas.engines.statevector",
    "qiskit_qnas.engines.density_matrix",
    "qiskit_qnas.engines.qnn",
    "qiskit_qnas.engines",
    "qiskit_qnas.circuits",
    "qiskit_qnas.model",
    "qiskit_qnas.cutting",
    "qiskit_qnas.cut_execution",
    "qiskit_qnas.space",
    "qiskit_qnas.supercircuit",
    "qiskit_qnas.backends",
    "qiskit_qnas.runtime_proxy",
    "qiskit_qnas.objective",
    "qiskit_qnas.runtime_options",
    "qiskit_qnas.targets",
    "qiskit_qnas.noise",
    "qiskit_qnas.qpu_budget",
    "qiskit_qnas.result",
    "qiskit_qnas.selection",
    "qiskit_qnas.objectives",
    "qiskit_qnas.fidelity",
    "qiskit_qnas.search",
    "qiskit_qnas.parallel",
    "qiskit_qnas.rundir",
    "qiskit_qnas.estimator",
    "qiskit_qnas",
]
#: command-line entry points: they may import anything (deferred, for start-up time) and nothing imports them;
#: the cli package's modules are all entry points (they import one another)
ENTRY_POINTS = ["qiskit_qnas.cli", "qiskit_qnas.cli.__main__", "qiskit_qnas.cli.arguments",
                "qiskit_qnas.cli.commands", "qiskit_qnas.cli.dispatch", "qiskit_qnas.cli.logs",
                "qiskit_qnas.cli.run_directory",
                "qiskit_qnas.cli.settings", "qiskit_qnas.cli.signals", "qiskit_qnas.demo", "qiskit_qnas.__main__"]


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _import_nodes(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node``, and whether it runs inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from _import_nodes(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _in_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _targets(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict) -> list[str]:
    """The package modules an import statement names (names that are not modules load their module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _in_package(alias.name)]
    if node.level:
        parts = importer.split(".") if is_package else importer.split(".")[:-1]
        base = parts[:len(parts) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if not _in_package(source):
        return []
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]


def package_imports(modules: dict[str, Path]) -> Iterator[tuple[str, int, str, bool]]:
    """(importer, line, imported module, inside a function) for every import of a package module,
    the parent packages an import runs included (but not the importer's own, already running)."""
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, in_function in _import_nodes(ast.parse(path.read_text(), str(path))):
            loaded: dict[str, None] = {}  # one entry per module, however many of its names are imported
            for target in _targets(importer, is_package, node, modules):
                parts = target.split(".")
                parents = [".".join(parts[:k]) for k in range(2, len(parts))]
                loaded.update(dict.fromkeys(parent for parent in parents if not importer.startswith(parent + ".")))
                loaded[target] = None
            for module in loaded:
                if module != importer:
                    yield importer, node.lineno, module, in_function


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """Every import that does not go strictly down :data:`LAYERS`, or that imports an entry point."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    problems = []
    for importer, line, module, _ in package_imports(modules):
        if importer in ENTRY_POINTS:
            continue
        if module in ENTRY_POINTS:
            problems.append(f"{importer}:{line} imports the entry point {module}")
        elif importer not in rank or module not in rank:
            problems.append(f"{importer}:{line} imports {module}: one of them is not in LAYERS")
        elif rank[module] >= rank[importer]:
            problems.append(f"{importer}:{line} imports {module}, which is not below it")
    return problems


def function_level_imports(modules: dict[str, Path]) -> list[str]:
    """Every import of a package module inside a function, outside the entry points."""
    return [f"{importer}:{line} imports {module} inside a function"
            for importer, line, module, in_function in package_imports(modules)
            if in_function and importer not in ENTRY_POINTS]


def test_every_module_has_one_place():
    declared = LAYERS + ENTRY_POINTS
    assert len(declared) == len(set(declared))
    assert sorted(declared) == sorted(package_modules())


def test_imports_go_down_the_layers():
    assert layer_violations(package_modules()) == []


def test_no_function_level_import_of_the_package():
    assert function_level_imports(package_modules()) == []
