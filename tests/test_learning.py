"""Reduced embedded-default runs learn, and the S4ECA adapters carry the language.

Every run uses the embedded default model (the shipped Swin pretrained on synthetic scenes, the pretrained MiniLM),
the default S4ECA config and 128x128 synthetic scenes, for 64 optimizer steps of batch 16, scored on the same 128
fixed validation scenes. Every synthetic scene holds at least two objects of the target's category, so without
language a model can only guess which one is meant.

* The default model with the real expressions beats the same run with one constant word for every expression.
* With the head's sentence input zeroed, the expression can reach the mask only through the adapters: the same
  comparison must still show a gap. An adapter that ignored its proxies (or a tuner that never routed them) would
  score the same with and without language there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # four training runs of 64 steps

REPO = Path(__file__).resolve().parents[1]
HEAD_WITHOUT_SENTENCE = """
import sys
import torch
from s4eca_peft.modeling.head import SegmentationHead
forward = SegmentationHead.forward
SegmentationHead.forward = lambda self, features, sentence: forward(self, features, torch.zeros_like(sentence))
from s4eca_peft.cli import train_main
sys.argv = ["train.py", *sys.argv[1:]]
train_main()
"""
COMMON = ["--max_train_steps", "64", "--train_samples_per_epoch", "512", "--num_val_samples", "128",
          "--num_test_samples", "0", "--seed", "0"]
CONSTANT = ["--constant_expression", "object"]


def train_in_pairs(runs: dict[str, list[str]], output: Path) -> dict[str, dict[str, float]]:
    """Run the training commands two at a time (one torch thread each); their val metrics."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    names, scores = list(runs), {}
    for pair in (names[i:i + 2] for i in range(0, len(names), 2)):
        processes = {
            name: subprocess.Popen([*runs[name], "--output_dir", str(output / name)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name in pair
        }
        for name, process in processes.items():
            log, _ = process.communicate(timeout=900)
            assert process.returncode == 0, log[-3000:]
            scores[name] = json.loads((output / name / "eval_results.json").read_text())["val"]
    print({name: round(100 * s["mIoU"], 2) for name, s in scores.items()})
    return scores


def test_reduced_default_runs_learn_language_and_the_adapters_carry_it(tmp_path, minilm_path):
    script = [sys.executable, str(REPO / "examples" / "train.py"), *COMMON]
    adapters_only = [sys.executable, "-c", HEAD_WITHOUT_SENTENCE, *COMMON]
    scores = train_in_pairs({
        "language": script, "constant": [*script, *CONSTANT],
        "adapters_language": adapters_only, "adapters_constant": [*adapters_only, *CONSTANT],
    }, tmp_path)
    assert {s["num_samples"] for s in scores.values()} == {128}
    assert scores["language"]["mIoU"] > scores["constant"]["mIoU"] + 0.02
    assert scores["language"]["oIoU"] > scores["constant"]["oIoU"]
    assert scores["adapters_language"]["mIoU"] > scores["adapters_constant"]["mIoU"] + 0.02
