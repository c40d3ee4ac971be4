"""Reduced embedded-default runs learn the language; whether the trained vision adapters use it.

Both runs use the embedded default model (the shipped Swin pretrained on synthetic scenes, the pretrained MiniLM),
the default S4ECA config and 128x128 synthetic scenes, for 64 optimizer steps of batch 16, scored on the same 128
fixed validation scenes. Every synthetic scene holds at least two objects of the target's category, so without
language a model can only guess which one is meant.

* The default model trained with the real expressions beats the same run with one constant word for every
  expression.
* Whether the trained vision adapters use the language: evaluated with every image's vision adapters given the
  proxies of another image's expression (the head still reads the image's own sentence), the same adapter should
  score lower; an adapter that ignored its proxies, or a tuner that never routed them, scores exactly the same. After
  64 steps this does not hold yet, so the test is a strict expected failure: it turns red the day it passes.
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
sys.path.insert(0, str(REPO / "benchmarks"))

from accuracy_synthetic import mismatch_proxies  # noqa: E402

COMMON = ["--max_train_steps", "64", "--train_samples_per_epoch", "512", "--num_val_samples", "128",
          "--num_test_samples", "0", "--seed", "0"]


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


def validation_scores(adapter: Path, mismatched_proxies: bool) -> dict[str, float]:
    """The adapter's val metrics; with ``mismatched_proxies``, each image's vision adapters read the proxies of the
    next image's expression in the batch (set from a hook after the text encoder ran)."""
    from s4eca_peft.inference.adapter_folder import load_for_inference
    from s4eca_peft.training.dataloaders import eval_dataloader, load_split
    from s4eca_peft.training.evaluation import evaluate_loop

    model, processor, _ = load_for_inference(adapter)
    if mismatched_proxies:
        mismatch_proxies(model)
    val = load_split("synthetic", "val", image_size=128, num_samples=128)
    return evaluate_loop(model, eval_dataloader(val, processor, batch_size=32), desc="val")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, dict[str, float]]]:
    """The reduced default run with the real expressions and with one constant word: their folder and val scores."""
    output = tmp_path_factory.mktemp("learning")
    script = [sys.executable, str(REPO / "examples" / "train.py"), *COMMON]
    return output, train_in_pairs({"language": script, "constant": [*script, "--constant_expression", "object"]},
                                  output)


def test_reduced_default_run_learns_language(trained, minilm_path):
    _, scores = trained
    assert {s["num_samples"] for s in scores.values()} == {128}
    assert scores["language"]["mIoU"] > scores["constant"]["mIoU"] + 0.02
    assert scores["language"]["oIoU"] > scores["constant"]["oIoU"]


@pytest.mark.xfail(strict=True, reason="after 64 steps the vision adapters barely read their proxies: the head's "
                   "sentence conditioning carries the language (docs/benchmarks.md, 'language use')")
def test_the_trained_vision_adapters_use_the_language(trained, minilm_path):
    output, scores = trained
    matched = validation_scores(output / "language", mismatched_proxies=False)
    assert abs(matched["mIoU"] - scores["language"]["mIoU"]) < 1e-6  # the saved adapter is the one scored
    mismatched = validation_scores(output / "language", mismatched_proxies=True)
    print({"matched proxies": round(100 * matched["mIoU"], 2), "mismatched": round(100 * mismatched["mIoU"], 2)})
    assert mismatched["mIoU"] < matched["mIoU"] - 0.005
