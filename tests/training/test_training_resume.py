"""Resuming in process with a real `accelerate.Accelerator`: two optimizer steps with a checkpoint after the first,
then a fresh model resumed from that checkpoint takes the second step and ends where the uninterrupted run ended."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny_configs import VOCAB_SIZE, tiny_text_config, tiny_vision_config
from torch.utils.data import DataLoader
from transformers import get_scheduler

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.training import TrainingArguments, set_training_mode, training_step
from s4eca_peft.training.checkpoints import CHECKPOINT_FILES, STATE_FILE, CheckpointManager, RunState
from s4eca_peft.training.loop import build_optimizer

SIZE, LENGTH = 32, 6


def samples(count: int = 4) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    labels = torch.zeros(count, 1, SIZE, SIZE)
    labels[:, :, SIZE // 4: SIZE // 2, SIZE // 3:] = 1
    return [{"pixel_values": torch.randn(3, SIZE, SIZE, generator=generator),
             "input_ids": torch.randint(3, VOCAB_SIZE, (LENGTH,), generator=generator),
             "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": labels[i]} for i in range(count)]


@pytest.fixture
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    reset()
    yield
    reset()


def prepared_run(checkpoint_root):
    """Model, optimizer, scheduler and dataloader (2 batches of 2) prepared by a new `Accelerator`, and its
    `CheckpointManager`; the model and its adapters are the same on every call (seeded)."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    config = ReferringSegmentationConfig(vision_config=tiny_vision_config("swin"),
                                         text_config=tiny_text_config("bert"), decoder_dim=16)
    model = get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(
        num_queries=4, text_bottleneck_size=16, text_num_heads=2, vision_bottleneck_size=8))
    training = TrainingArguments(learning_rate=1e-2)
    accelerator = Accelerator(cpu=True)
    optimizer = build_optimizer(model, training, accelerator.device)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=4)
    dataloader = DataLoader(samples(), batch_size=2, shuffle=False)
    model, optimizer, scheduler, dataloader = accelerator.prepare(model, optimizer, scheduler, dataloader)
    set_training_mode(accelerator.unwrap_model(model))
    return accelerator, model, optimizer, scheduler, dataloader, CheckpointManager(accelerator, checkpoint_root, 2)


def trained(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def assert_same_state(model, optimizer, reference_model, reference_optimizer):
    expected, got = trained(reference_model), trained(model)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    expected_state, state = reference_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert expected_state.keys() == state.keys() and len(state) == len(expected)
    for index in expected_state:
        for key, value in expected_state[index].items():
            torch.testing.assert_close(state[index][key], value, atol=1e-6, rtol=1e-5, msg=f"{index}.{key}")


def test_two_steps_checkpoint_and_resume_reach_the_uninterrupted_state(tmp_path, fresh_accelerator_state):
    accelerator, model, optimizer, scheduler, dataloader, checkpoints = prepared_run(tmp_path / "checkpoints")
    initial = trained(model)
    for step, batch in enumerate(dataloader, start=1):
        training_step(model, batch, accelerator, optimizer, scheduler, max_grad_norm=1.0)
        if step == 1:
            checkpoints.save(RunState(completed_steps=1, batches_in_epoch=1))
            after_first, lr_after_first = trained(model), scheduler.get_last_lr()
    saved = tmp_path / "checkpoints" / "checkpoint-1"
    assert all((saved / name).is_file() for name in (STATE_FILE, *CHECKPOINT_FILES))
    assert any(not torch.equal(initial[name], after_first[name]) for name in initial)  # the step trained

    resumed_accelerator, resumed, resumed_optimizer, resumed_scheduler, resumed_dataloader, resumed_checkpoints = (
        prepared_run(tmp_path / "checkpoints"))
    state = resumed_checkpoints.resume("latest")
    assert (state.completed_steps, state.batches_in_epoch) == (1, 1)
    assert all(torch.equal(value, after_first[name]) for name, value in trained(resumed).items())
    assert resumed_scheduler.get_last_lr() == lr_after_first != scheduler.get_last_lr()
    for batch in resumed_accelerator.skip_first_batches(resumed_dataloader, state.batches_in_epoch):
        training_step(resumed, batch, resumed_accelerator, resumed_optimizer, resumed_scheduler, max_grad_norm=1.0)
    assert_same_state(resumed, resumed_optimizer, model, optimizer)
    assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()
