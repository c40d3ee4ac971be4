"""The documented commands that the package's parsers read: found in Markdown, split like a shell, parsed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from accelerate.commands.launch import launch_command_parser

from s4eca_peft.data.prepare import build_parser as prepare_data_parser
from s4eca_peft.predict_command import build_parser as predict_parser
from s4eca_peft.training.arguments import parse_eval_args, parse_train_args

REPO = Path(__file__).resolve().parents[1]

ANY_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)

SEPARATORS = {"&&", "||", ";", "|"}


def _examples_predict_parser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("examples_predict", REPO / "examples" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _parse_with_argparse(parser) -> object:
    return lambda words: parser.parse_args(words)

PACKAGE_PARSERS = {
    "s4eca-train": parse_train_args,
    "examples/train.py": parse_train_args,
    "s4eca-eval": parse_eval_args,
    "s4eca-predict": _parse_with_argparse(predict_parser()),
    "examples/predict.py": _parse_with_argparse(_examples_predict_parser()),
    "s4eca-prepare-data": _parse_with_argparse(prepare_data_parser()),
}


def shell_segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at ``&&``, ``||``, ``;``, ``|``), environment assignments
    dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    for words in segments:
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words.pop(0)
    return [words for words in segments if words]


def package_command(words: list[str]) -> tuple[str, list[str]] | None:
    """``(program, its arguments)`` for a command that runs one of the package's parsers; None for others.

    ``accelerate launch`` is parsed here, by accelerate's own parser: its flags must come before the script.
    """
    if words[:2] == ["accelerate", "launch"]:
        launch = launch_command_parser().parse_args(words[2:])
        return launch.training_script, list(launch.training_script_args)
    if words[0] in ("python", "python3") and len(words) > 1:
        words = words[1:]
    if words[0] in PACKAGE_PARSERS:
        return words[0], words[1:]
    return None


def documented_commands(text: str) -> list[tuple[str, list[str], str]]:
    """``(program, arguments, line)`` of each documented command that one of the package's parsers reads."""
    found = []
    for block in ANY_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            for words in shell_segments(line):
                command = package_command(words)
                if command is not None:
                    found.append((*command, line))
    return found


def parse_command(program: str, arguments: list[str]) -> None:
    """Parse ``arguments`` with ``program``'s parser; ``--help`` may exit with status 0, nothing else may exit."""
    assert program in PACKAGE_PARSERS, f"{program}: not a script of this package"
    try:
        PACKAGE_PARSERS[program](arguments)
    except SystemExit as error:
        if error.code != 0 or not {"--help", "-h"} & set(arguments):
            raise
