"""Every shell command in docs/*.md and README.md runs, in page order, in one scratch folder.

Blocks preceded by ``<!-- requires: gpu -->`` or ``<!-- requires: hub -->`` are skipped. Training commands are
run as written with small-run flags appended (argparse keeps the last value), so the suite stays fast.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["index.md", "data.md", "training.md", "evaluation.md", "inference.md", "geospatial.md", "method.md", "peft.md",
         "benchmarks.md", "reproduce.md", "architecture.md"]
BLOCK = re.compile(r"(<!-- requires: (\w+) -->\s*)?```bash\n(.*?)```", re.S)
SHORTEN = ["--max_train_steps", "2", "--train_samples_per_epoch", "8", "--num_val_samples", "4",
           "--num_test_samples", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4"]
INSTALL = re.compile(r"^pip install\b")


def commands(text: str) -> list[str]:
    found = []
    for match in BLOCK.finditer(text):
        if match.group(2):  # requires a GPU or the Hub
            continue
        body = match.group(3).replace("\\\n", " ")
        found += [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    return found


def shorten(command: str) -> str:
    words = shlex.split(command)
    is_training = "examples/train.py" in command or (words and words[0] == "s4eca-train")
    command = command.replace("examples/", f"{REPO}/examples/").replace("benchmarks/", f"{REPO}/benchmarks/")
    if is_training and "--help" not in words:
        command += " " + " ".join(SHORTEN)
    return command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs")


def test_every_page_is_checked():
    listed = set(PAGES)
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= listed, "add new pages to PAGES"


@pytest.mark.parametrize("page", ["../README.md", *PAGES])
def test_page_commands_run(page, workdir):
    path = (REPO / "docs" / page).resolve()
    if not path.exists():
        pytest.skip(f"{page} not written")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for command in commands(path.read_text()):
        if INSTALL.match(command):
            continue  # the suite runs inside the installed environment
        if command.startswith("pytest") or "&& pytest" in command:
            continue  # the suite itself
        result = subprocess.run(shorten(command), shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{page}: {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def test_architecture_module_map_is_true_of_the_package():
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    named = set(re.findall(r"(?<![/\w])([a-z_]+\.py)", block)) - {"__init__.py"}
    package = REPO / "s4eca_peft"
    files = {p.name for p in package.rglob("*.py") if p.name != "__init__.py" and "rrsis_iou" not in p.parts}
    files -= {p.name for p in (package / "data").glob("*.py")} - named  # data/ is listed as a folder
    assert named - files == set(), "the map names modules that do not exist"
    assert files - named == set(), "modules missing from the map"
