"""The package keeps its shape: `tools/check_structure.py` finds nothing, and finds what it is meant to find."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import check_structure  # noqa: E402


def test_the_package_has_no_structure_findings():
    assert check_structure.findings() == []


def write_misshapen_package(package: Path) -> None:
    (package / "training").mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(check_structure.MAX_FUNCTION_LINES))
    parse_and_train = "def main(parser, loss):\n    parser.parse_args()\n    loss.backward()\n"
    (package / "training" / "loop.py").write_text(f"import argparse\n\n\ndef long():\n{body}\n\n\n{parse_and_train}")
    (package / "cli.py").write_text("from argparse import ArgumentParser\n")  # a command-line module: allowed
    (package / "helpers.py").write_text("PICKLE_SUFFIXES = ('.bin',)\n\n\ndef is_hub_id(name):\n    return True\n")


def test_the_check_reports_long_functions_parsers_that_train_argparse_and_second_homes(tmp_path):
    write_misshapen_package(tmp_path / "pkg")
    found = check_structure.findings(tmp_path / "pkg")
    assert any("training/loop.py:4: long is 251 lines long (at most 250)" in line for line in found)
    assert any("training/loop.py:257: main parses a command line and also trains" in line for line in found)
    assert any("training/loop.py: imports argparse" in line for line in found)
    assert not any(line.startswith("s4eca_peft/cli.py") for line in found)
    assert sum("helpers.py: defines" in line for line in found) == 2
    assert len(found) == 5


def test_the_script_exits_non_zero_on_findings(tmp_path):
    script = [sys.executable, str(REPO / "tools" / "check_structure.py")]
    clean = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0 and "0 structure finding(s)" in clean.stderr, clean.stdout
    write_misshapen_package(tmp_path / "pkg")
    misshapen = subprocess.run([*script, "--package", str(tmp_path / "pkg")], capture_output=True, text=True,
                               timeout=60)
    assert misshapen.returncode == 1 and "5 structure finding(s)" in misshapen.stderr
    assert "long is 251 lines long" in misshapen.stdout


def all_test_modules() -> list[Path]:
    return sorted((REPO / "tests").rglob("test_*.py"))


def test_test_modules_have_distinct_names_and_the_shared_modules_sit_at_the_top():
    """pytest imports each test module by its file name (the folders are not packages), and every folder reaches the
    shared modules through ``tests/`` on the path."""
    names = [path.name for path in all_test_modules()]
    assert len(names) > 50 and [name for name in set(names) if names.count(name) > 1] == []
    nested = [path for path in (REPO / "tests").rglob("*.py") if path.parent != REPO / "tests"]
    assert [path for path in nested if not path.name.startswith("test_")] == []
    assert list((REPO / "tests").rglob("__init__.py")) == []


def test_test_modules_import_no_other_test_module_nor_the_benchmarks():
    """Tests share code through helper modules (``tiny_models``, ``fake_hub``, ...), never through each other; only the
    benchmarks' own tests (``tests/benchmarks/``) import the benchmarks."""
    import ast

    found = []
    for path in all_test_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            top = {name.split(".")[0] for name in names}
            benchmark = path.parent.name != "benchmarks" and top & {"benchmarks", "accuracy_synthetic"}
            found += [f"{path.relative_to(REPO)} imports {name}" for name in sorted(top)
                      if name.startswith("test_") or benchmark]
    assert found == []
