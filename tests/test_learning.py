"""A reduced embedded-default run learns: language beats the same run with one constant word for every expression.

Both runs use the embedded default model (a small Swin built from a config, the pretrained MiniLM), the default
S4ECA config and 128x128 synthetic scenes, for 64 optimizer steps of batch 16, scored on the same 128 fixed
validation scenes. Every synthetic scene holds at least two objects of the target's category, so without language a
model can only guess which one is meant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two training runs of 64 steps

REPO = Path(__file__).resolve().parents[1]


def test_reduced_default_run_learns_language(tmp_path, minilm_path):
    common = ["--max_train_steps", "64", "--train_samples_per_epoch", "512", "--num_val_samples", "128",
              "--num_test_samples", "0", "--seed", "0"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    runs = {
        "language": common,
        "constant": [*common, "--constant_expression", "object"],
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "train.py"), "--output_dir", str(tmp_path / name), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name, args in runs.items()
    }
    scores = {}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
        scores[name] = json.loads((tmp_path / name / "eval_results.json").read_text())["val"]
    print({name: round(100 * s["mIoU"], 2) for name, s in scores.items()})
    assert scores["language"]["num_samples"] == scores["constant"]["num_samples"] == 128
    assert scores["language"]["mIoU"] > scores["constant"]["mIoU"] + 0.02
    assert scores["language"]["oIoU"] > scores["constant"]["oIoU"]
