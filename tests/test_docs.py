"""Every shell command in docs/*.md and README.md runs, in page order, in one scratch folder.

Blocks preceded by ``<!-- requires: gpu -->``, ``<!-- requires: hub -->`` or ``<!-- requires: server -->`` (a
server that runs until stopped) are skipped. Training commands are
run as written with small-run flags appended (argparse keeps the last value), and ``count_parameters.py`` in its
``--tiny`` mode, so the suite stays fast. Benchmarks run as ``python -m benchmarks.<name>`` with the repository on
``PYTHONPATH``. The benchmarks' ``--smoke`` commands are left to
``tests/benchmarks/test_benchmarks_smoke.py``, which runs them and checks what they write: nothing runs twice.

Every documented training, evaluation, prediction and data-preparation command (README, docs/, model_cards/, the
GPU- and Hub-only blocks included) is also parsed, without running it, by the parsers that would read it:
accelerate's launch parser for ``accelerate launch``, then the package's own for the script's arguments.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.launch import launch_command_parser
from doc_commands import documented_commands, package_command, parse_command, shell_segments

from s4eca_peft.training.arguments import parse_train_args
from s4eca_peft.training.launch_command import LaunchOptions

REPO = Path(__file__).resolve().parents[1]
PAGES = ["index.md", "data.md", "training.md", "evaluation.md", "inference.md", "geospatial.md", "method.md", "peft.md", "benchmarks.md",
         "reproduce.md", "architecture.md", "security.md", "demo.md"]
BLOCK = re.compile(r"(<!-- requires: (\w+) -->\s*)?```bash\n(.*?)```", re.S)
SHORTEN = ["--max_train_steps", "2", "--train_samples_per_epoch", "8", "--num_val_samples", "4",
           "--num_test_samples", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
           "--cpu_threads", "1"]  # one thread: the suite runs a test process per CPU
INSTALL = re.compile(r"^pip install\b")
TINY_COUNT = ["--tiny", "--image-size", "64"]
RUN_BY_SMOKE_TEST = re.compile(r"-m benchmarks\.(efficiency|accuracy_synthetic|learning_curve) .*--smoke")


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
    for folder in ("examples/", "benchmarks/", "tools/"):
        command = command.replace(folder, f"{REPO}/{folder}")
    if is_training and "--help" not in words:
        command += " " + " ".join(SHORTEN)
    if "benchmarks.count_parameters" in command:
        command += " " + " ".join(TINY_COUNT)
    return command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs")


def test_every_page_is_checked():
    listed = set(PAGES)
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= listed, "add new pages to PAGES"


@pytest.mark.slow
@pytest.mark.parametrize("page", ["../README.md", *PAGES])
def test_page_commands_run(page, workdir):
    path = (REPO / "docs" / page).resolve()
    if not path.exists():
        pytest.skip(f"{page} not written")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))  # -m benchmarks.x
    for command in commands(path.read_text()):
        if INSTALL.match(command):
            continue  # the suite runs inside the installed environment
        if command.startswith("pytest") or "&& pytest" in command:
            continue  # the suite itself
        if RUN_BY_SMOKE_TEST.search(command):
            continue  # tests/benchmarks/test_benchmarks_smoke.py runs it
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


# ----------------------------------------------------------------------------- documented commands parse
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "model_cards").glob("*.md"))]
CARD_COMMAND = "accelerate launch --mixed_precision bf16 examples/train.py --dataset refsegrs --data_dir /data/refsegrs"


def document_text(path: Path) -> str:
    """The page's text; the model card template with its ``$command`` filled as training fills it."""
    text = path.read_text()
    if path.name == "adapter_card_template.md":
        launch = launch_command_parser().parse_args(shlex.split(CARD_COMMAND)[2:])
        options = LaunchOptions(mixed_precision=launch.mixed_precision)
        text = text.replace("$command", options.command(parse_train_args(launch.training_script_args).arguments))
    return text


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_commands_parse(path, capsys):
    for program, arguments, line in documented_commands(document_text(path)):
        try:
            parse_command(program, arguments)
        except SystemExit as error:  # accelerate's parser, or ours refusing an argument
            pytest.fail(f"{path.name}: {line!r} does not parse (exit {error.code}): {capsys.readouterr().err[-500:]}")


def test_every_kind_of_documented_command_is_parsed():
    found = [(program, line) for path in DOCUMENTS for program, _, line in documented_commands(document_text(path))]
    assert {program for program, _ in found} >= {"examples/train.py", "s4eca-train", "s4eca-eval", "s4eca-predict",
                                                  "examples/predict.py", "s4eca-prepare-data"}
    real_data = [line for program, line in found if "--mixed_precision bf16" in line and "--dataset rrsisd" in line]
    assert real_data, "the real-data training command of docs/training.md is parsed"


@pytest.mark.parametrize("line", [
    "accelerate launch examples/train.py --mixed_precision bf16 --dataset rrsisd --data_dir /data",
    "s4eca-eval --adapter out --dataset rrsisd",
    "s4eca-predict --image tile.jpg",
    "s4eca-prepare-data --dataset coco --data_dir d",
])
def test_a_misplaced_or_missing_argument_is_caught(line):
    (words,) = shell_segments(line)
    with pytest.raises(SystemExit) as error:
        parse_command(*package_command(words))
    assert error.value.code == 2


def test_the_readmes_time_for_the_main_command_is_the_measured_one():
    """README states how long its main command takes; docs/training.md's default-run table measured it."""
    claimed = re.search(r"about (\d+) min on\s+(?:#\s*)?2 CPU cores", (REPO / "README.md").read_text())
    assert claimed, "README's main command states its time on 2 CPU cores"
    section = (REPO / "docs" / "training.md").read_text().split("<!-- benchmark:default-run:start -->")[1]
    row = next(line for line in section.splitlines() if line.startswith("| `accelerate launch examples/train.py` |"))
    minutes, seconds = map(int, re.search(r"\| (\d+) min (\d+) s \|", row).groups())
    assert abs(int(claimed.group(1)) - (minutes + seconds / 60)) <= 1, (claimed.group(0), row)
