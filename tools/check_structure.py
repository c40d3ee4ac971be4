"""Structure checks over the package's source, read as syntax trees (nothing is imported or run).

* no function or method in ``s4eca_peft/`` does two jobs, measured by two proxies: it is at most ``--max-lines``
  lines long (250 by default: room for one procedure read top to bottom, such as the training function, and not for
  two), and a function that parses a command line (calls ``parse_args``, ``parse_known_args`` or
  ``parse_args_into_dataclasses``) is at most ``MAX_PARSER_LINES`` lines and runs no backward pass: it reads the
  command line and hands the work to a function of its own;
* ``argparse`` is imported only by the command-line modules (``COMMAND_LINE_MODULES``);
* a few concepts have one home each: no module other than their home defines the names in ``SINGLE_HOMES``.

    python tools/check_structure.py            # exit status 1 and one line per finding when something is off
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "s4eca_peft"
MAX_FUNCTION_LINES = 250
MAX_PARSER_LINES = 50
PARSE_CALLS = frozenset({"parse_args", "parse_known_args", "parse_args_into_dataclasses"})
COMMAND_LINE_MODULES = frozenset({"cli.py", "data/prepare.py", "training/arguments.py", "predict_command.py", "demo/launch.py", "pretraining/command.py"})
SINGLE_HOMES = {
    "PICKLE_SUFFIXES": "files.py",
    "atomic_write": "files.py",
    "is_hub_id": "files.py",
    "hub_kwargs": "files.py",
    "load_split": "data/loaders.py",
}
"""Names defined in exactly one module of the package (module paths relative to ``s4eca_peft/``)."""


def modules(package: Path = PACKAGE) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(package.rglob("*.py")):
        yield path.relative_to(package).as_posix(), ast.parse(path.read_text(), filename=str(path))


def long_functions(tree: ast.Module, limit: int) -> Iterator[tuple[str, int, int]]:
    """``(name, first line, length)`` of every function longer than ``limit`` lines (decorators excluded)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                yield node.name, node.lineno, length


def parsers_doing_more(tree: ast.Module) -> Iterator[tuple[str, int, str]]:
    """``(name, first line, what else it does)`` of every function that parses a command line and also works."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        called = {call.func.attr for call in ast.walk(node)
                  if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)}
        if not called & PARSE_CALLS:
            continue
        length = node.end_lineno - node.lineno + 1
        if length > MAX_PARSER_LINES:
            yield node.name, node.lineno, f"is {length} lines long (a parser has at most {MAX_PARSER_LINES})"
        if "backward" in called:
            yield node.name, node.lineno, "also trains (calls backward)"


def imports_argparse(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name == "argparse" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def defined_names(tree: ast.Module) -> set[str]:
    """Module-level functions, classes and assigned names."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def findings(package: Path = PACKAGE, max_lines: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every structure finding, one line each (empty when the package is in shape)."""
    found = []
    for name, tree in modules(package):
        for function, line, length in long_functions(tree, max_lines):
            found.append(f"s4eca_peft/{name}:{line}: {function} is {length} lines long (at most {max_lines})")
        for function, line, what in parsers_doing_more(tree):
            found.append(f"s4eca_peft/{name}:{line}: {function} parses a command line and {what}")
        if imports_argparse(tree) and name not in COMMAND_LINE_MODULES:
            found.append(f"s4eca_peft/{name}: imports argparse outside the command-line modules")
        for concept in defined_names(tree) & set(SINGLE_HOMES):
            if name != SINGLE_HOMES[concept]:
                found.append(f"s4eca_peft/{name}: defines {concept}, whose one home is s4eca_peft/{SINGLE_HOMES[concept]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int, default=MAX_FUNCTION_LINES, help="Longest function allowed.")
    parser.add_argument("--package", type=Path, default=PACKAGE, help="Package folder to check.")
    args = parser.parse_args(argv)
    found = findings(args.package, max_lines=args.max_lines)
    for line in found:
        print(line)
    print(f"{len(found)} structure finding(s) in {args.package}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
