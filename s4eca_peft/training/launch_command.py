"""The command that reruns a training run: the ``accelerate launch`` options in effect, then the script's arguments.

The options are read from the run's `Accelerator` (processes, mixed precision, dynamo, CPU), never from how the run
was typed (``s4eca-train``, an Accelerate config file), and written all, defaults included, so that a reader's own
Accelerate config cannot change the rerun. CPU processes form a group only with ``ACCELERATE_USE_CPU=true`` and
``--multi_gpu`` (docs/training.md); a single CPU process gets ``--cpu``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TRAIN_SCRIPT = "examples/train.py"  # what the recorded command names (``s4eca-train`` runs the same code)


@dataclass(frozen=True)
class LaunchOptions:
    """The ``accelerate launch`` options of one run: processes that trained together, mixed precision (``no``,
    ``fp16``, ``bf16``, ``fp8``), whether they ran on the CPU, and Accelerate's ``torch.compile`` backend (lower case)
    with its mode and settings."""

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
            num_processes=int(accelerator.num_processes), mixed_precision=str(accelerator.mixed_precision),
            cpu=accelerator.device.type == "cpu", dynamo_backend=backend.lower(),
            dynamo_mode=plugin.mode if compiled and getattr(plugin, "mode", None) else None,
            dynamo_fullgraph=bool(compiled and getattr(plugin, "fullgraph", False)),
            dynamo_dynamic=bool(compiled and getattr(plugin, "dynamic", False)),
        )

    def command(self, arguments: Sequence[str], script: str = TRAIN_SCRIPT) -> str:
        """The whole shell command: ``[ACCELERATE_USE_CPU=true] accelerate launch <options> <script> <arguments>``,
        each word quoted for the shell where it needs to be."""
        words = ["accelerate", "launch"]
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
        environment = "ACCELERATE_USE_CPU=true " if self.cpu and self.num_processes > 1 else ""
        return environment + shlex.join([*words, script, *arguments])
