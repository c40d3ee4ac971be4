"""The package's imports point one way: no import cycle, and each part imports only the layers below it
(docs/architecture.md). Read from the syntax trees, nested imports included; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "s4eca_peft"

LAYERS: dict[str, int] = {
    "files": 0, "command_errors": 0,
    "tuner": 1, "modeling": 1,
    "data": 2, "metrics": 2,
    "adapter_folder": 3,
    "inference": 4,
    "geo": 5, "training": 5, "pretraining": 5,
    "predict_command": 6,
    "cli": 7, "demo": 7,
    "": 8,  # s4eca_peft/__init__.py: the public API on top of everything
}  # fmt: skip
"""Each part of the package (a subpackage or a top-level module) and its layer, bottom (0) to top. A part imports
parts of lower layers only: never one of its own layer, never one above."""


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a package is named by its ``__init__.py``)."""
    files = {}
    for file in package.rglob("*.py"):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = file
    return files


def imported_modules(module: str, file: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file (``from x import y`` counts both ``x`` and,
    when it is a module, ``x.y``)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            targets = [name] + [f"{name}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != module)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = module_files(package)
    return {module: imported_modules(module, file, set(files)) for module, file in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is not None:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def part(module: str) -> str:
    """``s4eca_peft.inference.windows`` -> ``inference``; the package itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": set(), "f": {"f"}}
    assert import_cycles(graph) == [["a", "b", "c"]]  # a module importing itself is no cycle between modules
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_relative_nested_and_package_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .sub import thing\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "thing.py").write_text("def f():\n    from ..other import g\n")
    (package / "other.py").write_text("import pkg.sub\n")
    graph = import_graph(package)
    assert graph["pkg"] == {"pkg.sub", "pkg.sub.thing"}
    assert graph["pkg.sub.thing"] == {"pkg.other"} and graph["pkg.other"] == {"pkg.sub"}


def test_the_package_has_no_import_cycle():
    cycles = import_cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_every_part_of_the_package_has_a_layer():
    parts = {part(module) for module in module_files()}
    assert parts - set(LAYERS) == set(), "add the new part to LAYERS here and to docs/architecture.md"
    assert set(LAYERS) - parts == set(), "LAYERS names a part the package no longer has"


def test_imports_point_down_the_layers():
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if part(module) != part(target) and LAYERS[part(target)] >= LAYERS[part(module)]
    )
    assert upward == [], "imports that do not point down the layers of docs/architecture.md:\n" + "\n".join(upward)


def test_the_layers_are_the_documented_ones():
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    documented = {}
    for row in rows:
        layer, names = (cell.strip() for cell in row.strip("|").split("|")[:2])
        for name in names.replace("`", "").split(","):
            name = name.strip().removesuffix(".py").removesuffix("/")
            documented["" if name == "__init__" else name] = int(layer)
    assert documented == LAYERS
