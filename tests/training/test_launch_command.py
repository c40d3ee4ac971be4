"""The model card's command: the ``accelerate launch`` options the run had (read from its Accelerator), then the
script's arguments; parsed back by accelerate's launch parser and the package's own, as the docs test parses docs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.commands.launch import launch_command_parser
from accelerate.state import AcceleratorState
from card_info import make_info
from doc_commands import documented_commands, package_command, parse_command, shell_segments

from s4eca_peft.training.arguments import parse_train_args
from s4eca_peft.training.launch_command import LaunchOptions
from s4eca_peft.training.model_card import render_model_card

ARGUMENTS = ("--dataset", "refsegrs", "--data_dir", "/data/ref segrs", "--image_size", "480", "--max_train_steps", "4")


def parse_recorded(command: str):
    """``command`` through accelerate's launch parser, its script arguments through the package's parser."""
    (words,) = shell_segments(command)  # environment assignments dropped, as a shell would take them
    assert words[:2] == ["accelerate", "launch"]
    program, arguments = package_command(words)
    parse_command(program, arguments)
    return launch_command_parser().parse_args(words[2:])


@pytest.fixture
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_options_are_read_from_the_accelerator_as_accelerate_launch_sets_them(monkeypatch, fresh_accelerate_state):
    for name, value in {"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_DYNAMO_BACKEND": "INDUCTOR",
                        "ACCELERATE_DYNAMO_MODE": "reduce-overhead", "ACCELERATE_USE_CPU": "true"}.items():
        monkeypatch.setenv(name, value)  # what `accelerate launch --cpu --mixed_precision bf16 --dynamo_backend ...` sets
    options = LaunchOptions.from_accelerator(Accelerator())
    assert options == LaunchOptions(num_processes=1, mixed_precision="bf16", cpu=True, dynamo_backend="inductor",
                                    dynamo_mode="reduce-overhead")
    launch = parse_recorded(options.command(parse_train_args(list(ARGUMENTS)).arguments))
    assert (launch.cpu, launch.num_processes, launch.mixed_precision, launch.dynamo_backend, launch.dynamo_mode) == (
        True, 1, "bf16", "inductor", "reduce-overhead")
    assert launch.training_script == "examples/train.py" and tuple(launch.training_script_args) == ARGUMENTS


def test_a_plain_run_records_its_defaults_explicitly(fresh_accelerate_state):
    command = LaunchOptions.from_accelerator(Accelerator()).command(ARGUMENTS)
    assert command.startswith("accelerate launch --cpu --num_processes 1 --mixed_precision no --dynamo_backend no "
                              "examples/train.py --dataset refsegrs --data_dir '/data/ref segrs'")
    launch = parse_recorded(command)
    assert (launch.mixed_precision, launch.dynamo_backend, launch.multi_gpu) == ("no", "no", False)


@pytest.mark.parametrize("device, prefix", [
    ("cpu", "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --mixed_precision bf16"),
    ("cuda", "accelerate launch --multi_gpu --num_processes 2 --mixed_precision bf16"),
])
def test_several_processes_are_recorded_as_one_group(device, prefix):
    # several processes cannot be made in this process: an object with the Accelerator's attributes stands in
    accelerator = SimpleNamespace(num_processes=2, mixed_precision="bf16", device=torch.device(device),
                                  state=SimpleNamespace(dynamo_plugin=None))
    command = LaunchOptions.from_accelerator(accelerator).command(ARGUMENTS)
    assert command.startswith(prefix + " --dynamo_backend no examples/train.py")
    launch = parse_recorded(command)
    assert (launch.multi_gpu, launch.num_processes, launch.cpu) == (True, 2, False)


def test_the_cards_command_block_parses():
    command = LaunchOptions(num_processes=2, mixed_precision="bf16", cpu=True).command(ARGUMENTS)
    card = render_model_card(make_info(command=command))
    ((program, arguments, line),) = [found for found in documented_commands(card) if "accelerate" in found[2]]
    assert line == command and program == "examples/train.py" and tuple(arguments) == ARGUMENTS
    parse_command(program, arguments)
