"""Training and prediction on a CUDA GPU (skipped where none is visible, as in CI).

`s4eca-train` runs under ``accelerate launch --mixed_precision bf16`` with the embedded default model, with and
without gradient checkpointing, and the adapter it writes predicts the same masks on the GPU in bf16 as on the CPU
in fp32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TRAIN = str(Path(__file__).resolve().parents[1] / "examples" / "train.py")


def train_on_gpu(output: Path, *extra: str) -> dict:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "bf16",
        TRAIN, "--output_dir", str(output), "--image_size", "64", "--max_train_steps", "12",
        "--train_samples_per_epoch", "64", "--per_device_train_batch_size", "8", "--num_val_samples", "16",
        "--num_test_samples", "8", *extra,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((output / "train_results.json").read_text())


@pytest.fixture(scope="module")
def gpu_adapter(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("gpu") / "run"
    stats = train_on_gpu(output)
    assert stats["mixed_precision"] == "bf16" and stats["train_steps"] == 12
    assert stats["peak_gpu_memory_gib"] > 0
    results = json.loads((output / "eval_results.json").read_text())
    assert all(np.isfinite(results[split]["oIoU"]) for split in ("val", "test"))
    return output


def test_gradient_checkpointing_trains_on_gpu(tmp_path, gpu_adapter):
    plain = json.loads((gpu_adapter / "train_results.json").read_text())
    checkpointed = train_on_gpu(tmp_path / "gc", "--gradient_checkpointing")
    assert checkpointed["train_steps"] == 12
    assert checkpointed["peak_gpu_memory_gib"] <= plain["peak_gpu_memory_gib"]


def test_gpu_bf16_prediction_matches_cpu_fp32(gpu_adapter):
    from s4eca_peft import S4ECASegmenter
    from s4eca_peft.data import generate_scene

    image, mask, expression = generate_scene(123, 96)[:3]
    cpu = S4ECASegmenter.from_pretrained(gpu_adapter, device="cpu", dtype=torch.float32)
    gpu = S4ECASegmenter.from_pretrained(gpu_adapter, device="cuda", dtype=torch.bfloat16)
    on_cpu = cpu.predict(image, expression, return_probabilities=True)
    on_gpu = gpu.predict(image, expression, return_probabilities=True)
    assert on_gpu.mask.shape == on_cpu.mask.shape == np.asarray(mask).shape[:2]
    assert np.abs(on_gpu.probabilities - on_cpu.probabilities).max() < 0.05
    assert (on_gpu.mask == on_cpu.mask).mean() > 0.98
