"""A training run owns its output folder: another run's folder, a concurrent run, another run's checkpoint, a full
disk, an incomplete checkpoint and an empty split are refused or reported in one clear line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

from s4eca_peft.cli import train_main
from s4eca_peft.training import loop
from s4eca_peft.training.checkpoints import STATE_FILE, CheckpointManager, RunState
from s4eca_peft.training.run_folder import (
    LOCK_FILE,
    RUN_FILE,
    OutputDirError,
    acquire_lock,
    claim_output_dir,
    release_lock,
)


def another_run(folder: Path) -> Path:
    (folder / "checkpoints" / "checkpoint-40").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-40" / STATE_FILE).write_text(RunState(completed_steps=40).to_json())
    (folder / "adapter_model.safetensors").write_bytes(b"the other run's adapter")
    (folder / RUN_FILE).write_text(json.dumps({"run_id": "other"}))
    return folder


def test_a_folder_holding_another_run_is_refused(tmp_path):
    folder = another_run(tmp_path / "run")
    with pytest.raises(OutputDirError, match=r"already holds files of another run \(adapter_model.safetensors, check"):
        claim_output_dir(folder, resume_from=None, overwrite=False)
    assert (folder / "adapter_model.safetensors").read_bytes() == b"the other run's adapter"
    assert claim_output_dir(folder, resume_from="latest", overwrite=False) == "other"  # the same run, resumed
    own = str(folder / "checkpoints" / "checkpoint-40")
    assert claim_output_dir(folder, resume_from=own, overwrite=False) == "other"
    new_id = claim_output_dir(folder, resume_from=None, overwrite=True)
    assert new_id != "other" and json.loads((folder / RUN_FILE).read_text())["run_id"] == new_id
    assert not (folder / "checkpoints").exists()  # they would outrank the new run's and be picked by 'latest'


def test_training_into_another_runs_folder_stops_before_any_work(tmp_path, monkeypatch, capsys):
    folder = another_run(tmp_path / "run")
    monkeypatch.setattr(loop, "build_datasets", lambda *args: pytest.fail("the run started"))
    with pytest.raises(SystemExit) as exited:
        train_main(["--output_dir", str(folder)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s4eca-train: error: --output_dir" in err and "--overwrite_output_dir" in err
    assert not (folder / LOCK_FILE).exists()  # released on the way out
    with pytest.raises(OutputDirError):
        train_main(["--output_dir", str(folder), "--debug"])


def test_a_second_concurrent_run_is_refused_and_a_stale_lock_taken_over(tmp_path):
    lock = acquire_lock(tmp_path)
    with pytest.raises(OutputDirError, match=rf"Another training run \(process {os.getpid()} on .*\) is writing"):
        acquire_lock(tmp_path)
    release_lock(lock)
    assert not lock.exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = json.loads(acquire_lock(tmp_path).read_text())
    (tmp_path / LOCK_FILE).write_text(json.dumps(dict(owner, pid=int(gone.stdout))))  # its process has ended
    assert json.loads(acquire_lock(tmp_path).read_text())["pid"] == os.getpid()


class FakeAccelerator:
    """What `CheckpointManager` uses of an `accelerate.Accelerator`, writing a checkpoint's files itself."""

    is_main_process = True

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with, self.loaded = fail_with, []

    def register_save_state_pre_hook(self, hook): ...
    def register_load_state_pre_hook(self, hook): ...
    def wait_for_everyone(self): ...
    def print(self, *args): print(*args)

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)  # as Accelerate does
        if self.fail_with is not None:
            raise self.fail_with
        for name in ("adapter_model.safetensors", "optimizer.bin", "scheduler.bin"):
            (Path(folder) / name).write_bytes(b"x")

    def load_state(self, folder: str) -> None:
        self.loaded.append(folder)


def prepared_accelerator():
    """A real `accelerate.Accelerator` with a tiny PEFT model, its optimizer and scheduler prepared: its checkpoints
    hold the adapter, optimizer and scheduler files a training run's do."""
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(target_modules=["0"], r=2))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    accelerator = Accelerator()
    accelerator.prepare(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    return accelerator


def test_resuming_another_runs_checkpoint_keeps_the_best_adapter_here(tmp_path):
    old = CheckpointManager(prepared_accelerator(), tmp_path / "old" / "checkpoints", total_limit=2)
    old.save(RunState(completed_steps=8, best={"step": 8, "oIoU": 0.9}))
    new = CheckpointManager(prepared_accelerator(), tmp_path / "new" / "checkpoints", total_limit=2)
    state = new.resume(str(tmp_path / "old" / "checkpoints" / "checkpoint-8"))
    assert state.completed_steps == 8 and state.best is None  # the next validation saves an adapter here
    assert old.resume("latest").best == {"step": 8, "oIoU": 0.9}  # its own run keeps its best


def test_only_the_last_total_limit_checkpoints_are_kept(tmp_path):
    manager = CheckpointManager(prepared_accelerator(), tmp_path / "checkpoints", total_limit=2)
    for step in (1, 2, 3, 4):
        manager.save(RunState(completed_steps=step))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-4"]
    assert manager.resume("latest").completed_steps == 4


def test_incomplete_checkpoint_names_the_missing_files(tmp_path):
    manager = CheckpointManager(prepared_accelerator(), tmp_path / "checkpoints", total_limit=2)
    manager.save(RunState(completed_steps=3))
    checkpoint = tmp_path / "checkpoints" / "checkpoint-3"
    (checkpoint / "optimizer.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"checkpoint-3: not a complete checkpoint \(no optimizer.bin\)"):
        manager.resume(str(checkpoint))


@pytest.mark.parametrize("error, cause", [
    (RuntimeError("basic_ios::clear: iostream error"), "basic_ios::clear: iostream error"),  # torch.save
    (SafetensorError("Error while serializing: No space left on device"), "Error while serializing: No space left"),
    (OSError(28, "No space left on device"), "No space left on device"),
])
def test_a_full_disk_during_a_checkpoint_names_the_folder(tmp_path, error, cause):
    root = tmp_path / "checkpoints"
    manager = CheckpointManager(FakeAccelerator(error), root, 2)
    with pytest.raises(OSError, match=rf"^cannot write '{root / 'checkpoint-5'}': {cause}.*; "
                                      "the previous checkpoint is intact"):
        manager.save(RunState(completed_steps=5))
    assert not list(root.iterdir())  # no partial checkpoint left


def test_an_empty_train_split_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "build_base_and_processor", lambda *args: pytest.fail("the model was built"))
    monkeypatch.setattr(loop, "build_datasets", lambda data, seed: {"train": [], "val": [1]})
    with pytest.raises(SystemExit):
        train_main(["--output_dir", str(tmp_path / "run")])
    assert "s4eca-train: error: The train split of --dataset synthetic has no samples" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, expected", [("--checkpointing_steps", "0", "a positive integer or 'epoch', got '0'"),
                                                   ("--logging_steps", "0", "positive, got 0"),
                                                   ("--eval_every_epochs", "0", "positive, got 0"),
                                                   ("--max_train_steps", "-3", "positive, got -3")])
def test_training_flags_out_of_range_are_usage_errors(capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exited:
        train_main([flag, value])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exited.value.code == 2
    assert errors == [f"s4eca-train: error: `{flag[2:]}` ({flag}) must be {expected}."], errors


def test_s4eca_eval_errors_are_one_line(tmp_path, capsys):
    from s4eca_peft.cli import eval_main

    with pytest.raises(SystemExit) as exited:
        eval_main(["--adapter", str(tmp_path / "missing"), "--num_samples", "2"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"s4eca-eval: error: '{tmp_path / 'missing'}' is not an adapter folder")
    with pytest.raises(FileNotFoundError):
        eval_main(["--adapter", str(tmp_path / "missing"), "--num_samples", "2", "--debug"])


@pytest.mark.parametrize("state, failure, expected", [
    ("[]", None, "training_state.json: expected a JSON object with the fields"),
    ('{"completed_steps": 3, "owner": "x"}', None, "training_state.json: expected a JSON object with the fields"),
    ("[" * 100_000, None, "training_state.json: JSON nested deeper than MAX_JSON_DEPTH"),
    (None, pickle.UnpicklingError("Weights only load failed"), "cannot restore the optimizer and scheduler states"),
])
def test_a_checkpoint_that_is_not_ours_is_one_clear_error(tmp_path, state, failure, expected):
    manager = CheckpointManager(FakeAccelerator(), tmp_path / "checkpoints", total_limit=2)
    manager.save(RunState(completed_steps=3))
    checkpoint = tmp_path / "checkpoints" / "checkpoint-3"
    if state is not None:
        (checkpoint / "training_state.json").write_text(state)
    if failure is not None:
        manager.accelerator.load_state = lambda folder: (_ for _ in ()).throw(failure)
    with pytest.raises(ValueError, match=expected):
        manager.resume(str(checkpoint))


def test_a_link_planted_at_the_temporary_checkpoint_name_is_not_followed(tmp_path):
    root, elsewhere = tmp_path / "checkpoints", tmp_path / "elsewhere"
    manager = CheckpointManager(FakeAccelerator(), root, total_limit=2)
    elsewhere.mkdir()
    (root / ".tmp-checkpoint-4").symlink_to(elsewhere, target_is_directory=True)
    manager.save(RunState(completed_steps=4))
    assert not list(elsewhere.iterdir()) and (root / "checkpoint-4" / STATE_FILE).is_file()
