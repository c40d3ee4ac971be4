"""The command that reruns a training run: the ``accelerate launch`` options in effect, then the script's arguments.

A run started as ``accelerate launch --mixed_precision bf16 --multi_gpu --num_processes 2 examples/train.py ...``
(or through ``s4eca-train``, or with an Accelerate config file) is recorded from what the run's `Accelerator` reports
(number of processes, mixed precision, dynamo backend and settings, CPU or accelerator), never from how it was typed,
so the card's command reruns the same setup. Every option is written, defaults included, so that a reader's own
Accelerate config file cannot change the rerun. Processes on the CPU form a group only with
``ACCELERATE_USE_CPU=true`` and ``--multi_gpu`` (see docs/training.md); a single CPU process gets ``--cpu``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TRAIN_SCRIPT = "examples/train.py"
"""The training script the recorded command names (``s4eca-train`` runs the same code)."""


@dataclass(frozen=True)
class LaunchOptions:
    """The ``accelerate launch`` options of one run.

    Args:
        num_processes (`int`, defaults to 1): processes that trained together.
        mixed_precision (`str`, defaults to `"no"`): ``no``, ``fp16``, ``bf16`` or ``fp8``.
        cpu (`bool`, defaults to `False`): the processes ran on the CPU.
        dynamo_backend (`str`, defaults to `"no"`): Accelerate's ``torch.compile`` backend (lower case).
        dynamo_mode (`str`, *optional*): its compile mode.
        dynamo_fullgraph (`bool`, defaults to `False`) / dynamo_dynamic (`bool`, defaults to `False`): its settings.
    """

    num_processes: int = 1
    mixed_precision: str = "no"
    cpu: bool = False
    dynamo_backend: str = "no"
    dynamo_mode: str | None = None
    dynamo_fullgraph: bool = False
    dynamo_dynamic: bool = False

    @classmethod
    def from_accelerator(cls, accelerator: Any) -> LaunchOptions:
        """The options in effect in ``accelerator`` (an `accelerate.Accelerator`)."""
        plugin = getattr(accelerator.state, "dynamo_plugin", None)
        backend = getattr(getattr(plugin, "backend", None), "value", None) or "no"
        compiled = backend.lower() != "no"
        return cls(
            num_processes=int(accelerator.num_processes),
            mixed_precision=str(accelerator.mixed_precision),
            cpu=accelerator.device.type == "cpu",
            dynamo_backend=backend.lower(),
            dynamo_mode=plugin.mode if compiled and getattr(plugin, "mode", None) else None,
            dynamo_fullgraph=bool(compiled and getattr(plugin, "fullgraph", False)),
            dynamo_dynamic=bool(compiled and getattr(plugin, "dynamic", False)),
        )

    def launch_arguments(self) -> list[str]:
        """The options as ``accelerate launch`` flags (what comes before the script)."""
        words = []
        if self.num_processes > 1:
            words.append("--multi_gpu")  # several CPU processes too (with ACCELERATE_USE_CPU=true)
        elif self.cpu:
            words.append("--cpu")
        words += ["--num_processes", str(self.num_processes), "--mixed_precision", self.mixed_precision,
                  "--dynamo_backend", self.dynamo_backend]
        if self.dynamo_mode:
            words += ["--dynamo_mode", self.dynamo_mode]
        if self.dynamo_fullgraph:
            words.append("--dynamo_use_fullgraph")
        if self.dynamo_dynamic:
            words.append("--dynamo_use_dynamic")
        return words

    def command(self, arguments: Sequence[str], script: str = TRAIN_SCRIPT) -> str:
        """The whole shell command: ``[ACCELERATE_USE_CPU=true] accelerate launch <options> <script> <arguments>``,
        each word quoted for the shell where it needs to be."""
        environment = "ACCELERATE_USE_CPU=true " if self.cpu and self.num_processes > 1 else ""
        words = ["accelerate", "launch", *self.launch_arguments(), script, *arguments]
        return environment + shlex.join(words)
