"""The argument dataclasses behind ``s4eca-train`` and ``s4eca-eval``: flags, defaults, validation, no mutation."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from s4eca_peft.training import (
    DataArguments,
    S4ECAArguments,
    TrainingArguments,
    parse_eval_args,
    parse_train_args,
)
from s4eca_peft.training.checkpoints import RunState
from s4eca_peft.training.loop import cpu_threads_per_process, total_train_steps


def test_flags_fill_the_dataclasses_and_the_s4eca_config():
    config = parse_train_args(["--no_scale_selection", "--extractor_dilations", "1", "4", "--num_queries", "8",
                               "--gradient_checkpointing", "--torch_compile", "--dataset", "refsegrs", "--data_dir", "d"])
    s4eca = config.s4eca.to_config()
    assert (s4eca.scale_selection, s4eca.spatial_selection, s4eca.text_feedback) == (False, True, True)
    assert s4eca.extractor_dilations == [1, 4] and s4eca.extractor_kernel_sizes == [3, 3] and s4eca.num_queries == 8
    assert config.training.gradient_checkpointing is True and config.training.torch_compile is True
    assert parse_train_args([]).training.torch_compile is False
    assert config.data.image_size == 480  # real data defaults to the published size
    assert config.arguments[:3] == ("--no_scale_selection", "--extractor_dilations", "1")


def test_defaults_are_the_embedded_default_run():
    config = parse_train_args([])
    assert config.data == DataArguments() and config.data.image_size == 128
    assert config.s4eca == S4ECAArguments() and config.training == TrainingArguments()
    assert config.training.checkpoint_every is None and parse_train_args(
        ["--checkpointing_steps", "5"]).training.checkpoint_every == 5


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "rrsisd"], "data_dir.*required with --dataset rrsisd"),
    (["--checkpointing_steps", "often"], "checkpointing_steps.*positive integer or 'epoch'"),
    (["--push_to_hub"], "needs `hub_model_id`"),
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size.*must be positive"),
    (["--num_queries", "0"], r"`num_queries` \(--num_queries\) must be positive"),
    (["--cpu_threads", "0"], r"`cpu_threads` \(--cpu_threads\) must be positive"),
])
def test_bad_flags_exit_with_a_message_naming_them(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_args(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_the_s4eca_flags_are_the_config_fields_with_its_defaults():
    from s4eca_peft import S4ECAConfig
    from s4eca_peft.training.arguments import S4ECA_CONFIG_ONLY

    names = [f.name for f in dataclasses.fields(S4ECAArguments)]
    assert set(names) == {f.name for f in dataclasses.fields(S4ECAConfig)} - S4ECA_CONFIG_ONLY
    defaults, config = S4ECAArguments(), S4ECAConfig()
    assert {name: getattr(defaults, name) for name in names} == {name: getattr(config, name) for name in names}
    assert defaults.to_config().to_dict() == config.to_dict()


def test_the_head_place_and_rank_kernels_are_on_by_default_and_need_a_head_that_reads_the_sentence():
    from s4eca_peft.training.base_model import build_base_and_processor

    for kernel in ("head_place_kernel", "head_rank_kernel"):
        assert getattr(parse_train_args([]).model, kernel) is True
        assert getattr(parse_train_args([f"--no_{kernel}"]).model, kernel) is False
    # without the sentence there is nothing to generate the kernels from: the head is built without them
    sentence_free = parse_train_args(["--no_head_reads_sentence", "--decoder_dim", "16"]).model
    base, _, _ = build_base_and_processor(sentence_free, image_size=64)
    assert base.config.head_place_kernel is False and base.segmentation_head.place_kernel is None
    assert base.config.head_rank_kernel is False and base.segmentation_head.rank_kernel is None


def test_head_sentence_dropout_reaches_the_model_config_and_is_refused_outside_0_to_1(capsys):
    from s4eca_peft.training.base_model import build_base_and_processor

    assert parse_train_args([]).model.head_sentence_dropout == 0.0
    model_args = parse_train_args(["--head_sentence_dropout", "0.5", "--decoder_dim", "16"]).model
    base, _, _ = build_base_and_processor(model_args, image_size=64)
    assert base.config.head_sentence_dropout == 0.5 and base.config.head_rank_kernel is True
    assert base.segmentation_head.rank_kernel is not None
    with pytest.raises(SystemExit):
        parse_train_args(["--head_sentence_dropout", "1"])
    assert "`head_sentence_dropout` (--head_sentence_dropout) must be in [0, 1), got 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_train_args(["--head_sentence_dropout", "0.5", "--no_head_reads_sentence"])
    assert "cannot go with --no_head_reads_sentence" in capsys.readouterr().err


def test_the_head_category_map_is_on_by_default_and_only_with_the_rank_kernel():
    from s4eca_peft.training.base_model import build_base_and_processor

    def head_of(*flags):
        base, _, _ = build_base_and_processor(parse_train_args([*flags, "--decoder_dim", "16"]).model, image_size=64)
        return base.config.head_category_map, base.segmentation_head.category_kernel is not None

    assert parse_train_args([]).model.head_category_map is True
    assert head_of() == (True, True)
    assert head_of("--no_head_category_map") == (False, False)
    # the map gives the rank kernel its candidates: without the kernel (or the sentence) the head has none
    assert head_of("--no_head_rank_kernel") == (False, False)
    assert head_of("--no_head_reads_sentence") == (False, False)


def test_the_rank_kernel_side_x_count_products_are_on_by_default_and_only_with_the_rank_kernel():
    from s4eca_peft.training.base_model import build_base_and_processor

    def head_of(*flags):
        base, _, _ = build_base_and_processor(parse_train_args([*flags, "--decoder_dim", "16"]).model, image_size=64)
        return base.config.head_rank_product, base.segmentation_head.rank_sides is not None

    assert parse_train_args([]).model.head_rank_product is True
    assert head_of() == (True, True)
    assert head_of("--no_head_rank_product") == (False, False)
    assert head_of("--no_head_rank_kernel") == (False, False)


def test_eval_arguments():
    arguments = parse_eval_args(["--adapter", "a", "--split", "val", "--num_samples", "9"])
    assert (arguments.adapter, arguments.split, arguments.num_samples, arguments.dataset) == ("a", "val", 9, "synthetic")
    with pytest.raises(SystemExit):
        parse_eval_args(["--adapter", "a", "--dataset", "refsegrs"])


def test_arguments_are_frozen_and_the_schedule_leaves_them_alone():
    training = TrainingArguments(num_train_epochs=3, per_device_train_batch_size=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.max_train_steps = 1
    assert total_train_steps(training, num_samples=40, num_processes=1) == 30  # 10 steps per epoch
    assert training.max_train_steps is None and training.num_train_epochs == 3
    accumulating = dataclasses.replace(training, gradient_accumulation_steps=2)
    assert total_train_steps(accumulating, 40, 2) == 9  # 5 batches per process: 3 steps per epoch
    assert total_train_steps(dataclasses.replace(accumulating, max_train_steps=25), 40, 2) == 25


def test_cpu_threads_are_the_process_cpus_shared_among_the_machines_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [cpu_threads_per_process(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_run_state_round_trips_through_json():
    state = RunState(completed_steps=4, epoch=1, batches_in_epoch=2, history=[{"step": 4, "oIoU": 0.5}],
                     losses=[[1, 0.9], [2, 0.8]], best={"step": 4, "oIoU": 0.5}, train_seconds=1.5)
    assert RunState.from_json(state.to_json()) == state
