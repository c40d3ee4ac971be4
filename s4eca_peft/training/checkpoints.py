"""Resumable training checkpoints, ``<output_dir>/checkpoints/checkpoint-<step>/``: Accelerate's state (optimizer,
scheduler, RNG) with the model saved as the PEFT adapter only, plus ``training_state.json`` (`RunState`). Each is
written to a temporary sibling and renamed once complete, so a run killed during a save resumes from the previous one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import parse_json, write_failed

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"
TEMPORARY_PREFIX = ".tmp-checkpoint-"
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.bin", "scheduler.bin")  # besides STATE_FILE


@dataclass
class RunState:
    """Where a training run is: the position in the data, what it measured, and the time it trained."""

    completed_steps: int = 0  # optimizer steps
    epoch: int = 0  # the epoch being read (epochs finished so far)
    batches_in_epoch: int = 0  # batches of `epoch` already read (skipped on resume)
    history: list[dict[str, Any]] = field(default_factory=list)  # per validation: {"step", "epoch", **metrics}
    losses: list[list[float]] = field(default_factory=list)  # [step, loss (mean over processes)] per optimizer step
    best: dict[str, Any] | None = None  # the history record with the best val oIoU
    train_seconds: float = 0.0  # data loading and optimizer steps (validation and saves excluded)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, source: str = STATE_FILE) -> RunState:
        """The state written by `to_json`; a ValueError naming ``source`` for anything else."""
        data = parse_json(text, source)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or not set(data) <= names:
            raise ValueError(f"{source}: expected a JSON object with the fields {', '.join(sorted(names))}.")
        return cls(**data)


def list_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Complete checkpoints (renamed from their temporary folder), oldest first."""
    found = [(int(m.group(1)), p) for p in checkpoint_root.glob("checkpoint-*") if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def load_adapter_weights(peft_model: Any, folder: Path) -> None:
    """Load ``folder/adapter_model.safetensors`` into ``peft_model``, refusing keys the model has no place for."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    file = folder / "adapter_model.safetensors"
    result = set_peft_model_state_dict(peft_model, load_file(str(file)))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{file}: unexpected adapter keys {unexpected[:5]}.")


class CheckpointManager:
    """Saves adapter-only checkpoints of ``accelerator`` (its save/load hooks registered here) in ``root``
    (``<output_dir>/checkpoints``), keeps the last ``total_limit`` complete ones, and resumes."""

    def __init__(self, accelerator: Any, root: str | os.PathLike, total_limit: int) -> None:
        self.accelerator, self.root, self.total_limit = accelerator, Path(root), total_limit
        accelerator.register_save_state_pre_hook(self._save_adapter_only)
        accelerator.register_load_state_pre_hook(self._load_adapter_only)
        if accelerator.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{TEMPORARY_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)  # an interrupted save; the previous checkpoint is intact
        accelerator.wait_for_everyone()

    def _save_adapter_only(self, models: list, weights: list, checkpoint_dir: str) -> None:
        del weights[len(weights) - len(models):]  # the adapter alone is saved, below
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(models[0]).save_pretrained(checkpoint_dir)

    def _load_adapter_only(self, models: list, checkpoint_dir: str) -> None:
        load_adapter_weights(self.accelerator.unwrap_model(models.pop()), Path(checkpoint_dir))

    def resume(self, resume_from: str | None) -> RunState:
        """Restore adapter, optimizer, scheduler and RNG from ``"latest"`` or a checkpoint folder; a fresh state when
        ``resume_from`` is None or there is no checkpoint yet."""
        path = Path(resume_from) if resume_from not in (None, "latest") else None
        if resume_from == "latest":
            path = next(reversed(list_checkpoints(self.root)), None)
            if path is None:
                self.accelerator.print(f"no checkpoint in {self.root}; starting from scratch")
        if path is None:
            return RunState()
        missing = [name for name in (STATE_FILE, *CHECKPOINT_FILES) if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"--resume_from_checkpoint {path}: not a complete checkpoint (no {', '.join(missing)}).")
        state = RunState.from_json((path / STATE_FILE).read_text(encoding="utf-8"), str(path / STATE_FILE))
        try:
            self.accelerator.load_state(str(path))
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:  # torch.load(weights_only=True) refusals
            raise ValueError(f"{path}: cannot restore the optimizer and scheduler states ({error}).") from error
        self.accelerator.print(f"resumed from {path} at step {state.completed_steps}")
        if Path(os.path.realpath(path)).parent != Path(os.path.realpath(self.root)):
            # another run's checkpoint: its best adapter lives in that run's folder, so the next validation
            # saves one here whatever it scores
            state.best = None
            self.accelerator.print(f"{path} belongs to another run's folder; the best adapter starts afresh here")
        return state

    def save(self, state: RunState) -> None:
        """Write ``checkpoint-<step>`` (the folder appears only once complete) and drop the oldest beyond the limit."""
        step = state.completed_steps
        tmp, final = self.root / f"{TEMPORARY_PREFIX}{step}", self.root / f"checkpoint-{step}"
        try:
            if self.accelerator.is_main_process:  # made here, exclusively: a link planted at its name is not followed
                shutil.rmtree(tmp, ignore_errors=True)  # a folder; a link or file is not followed but unlinked
                tmp.unlink(missing_ok=True)
                tmp.mkdir()
            self.accelerator.wait_for_everyone()
            self.accelerator.save_state(str(tmp))
            if self.accelerator.is_main_process:
                (tmp / STATE_FILE).write_text(state.to_json())
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                for old in list_checkpoints(self.root)[: -self.total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        except Exception as error:  # noqa: BLE001 - a full disk: torch's "iostream error", SafetensorError, OSError
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_failed(final, error, "the previous checkpoint is intact: free space and resume with "
                                             "--resume_from_checkpoint latest") from error
        self.accelerator.wait_for_everyone()
