"""Reduced embedded-default runs learn the language, and the default model's trained vision adapters carry it.

The training runs use the embedded default encoders (the shipped Swin pretrained on synthetic scenes, the pretrained
MiniLM), the default S4ECA config and 128x128 synthetic scenes in batches of 16, scored on the same 128 fixed
validation scenes. Every synthetic scene holds at least two objects of the target's category, so without language a
model can only guess which one is meant.

* The default model trained for 64 steps with the real expressions beats the same run with one constant word for
  every expression, on the attribute and position families of synthetic data version 1 (64 steps are too few for
  the relational families of version 2, which the learning-curve benchmark follows to convergence).
* The default model's trained vision adapters carry the language: the shipped reference adapter (the default
  adapter config trained to convergence) scores at least 10 points of val mIoU lower when every image's vision
  adapters are given the proxies of another image's expression (the language-use aim of docs/benchmarks.md), and
  clearly lower with its vision adapters switched off. Adapters that ignored their proxies, or a tuner that never
  routed them, would score exactly the same under the swap (tests/tuner/test_language_use.py, which also checks
  that the loss trains the text adapters through the vision adapters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s4eca_peft.data.synthetic import DATA_VERSION
from s4eca_peft.tuner import mismatch_proxies

pytestmark = pytest.mark.slow  # two training runs of 64 steps, evaluations of the reference adapter

REPO = Path(__file__).resolve().parents[1]

COMMON = ["--num_val_samples", "128", "--num_test_samples", "0", "--seed", "0"]
ATTRIBUTE_DATA = 1
"""Synthetic data version of the 64-step runs: its families name the target's own attributes and positions."""
DEFAULT_RUN = ["--max_train_steps", "64", "--train_samples_per_epoch", "512", "--data_version", str(ATTRIBUTE_DATA),
               "--cpu_threads", "1", *COMMON]


def train_two_at_a_time(runs: dict[str, list[str]], output: Path) -> dict[str, dict[str, float]]:
    """Run the training commands two at a time (one torch thread each); their val metrics."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")

    def train(name: str) -> dict[str, float]:
        done = subprocess.run([*runs[name], "--output_dir", str(output / name)], env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return json.loads((output / name / "eval_results.json").read_text())["val"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        scores = dict(zip(runs, pool.map(train, runs)))
    print({name: round(100 * s["mIoU"], 2) for name, s in scores.items()})
    return scores


def validation_scores(adapter: str | Path, mismatched_proxies: bool, version: int = DATA_VERSION,
                      vision_adapters: bool = True) -> dict[str, float]:
    """The adapter's val metrics; with ``mismatched_proxies``, each image's vision adapters read the proxies of the
    next image's expression in the batch (set from a hook after the text encoder ran); without ``vision_adapters``,
    the vision adapters are switched off (PEFT's ``enable_adapters(False)``), the text adapters and head kept."""
    from s4eca_peft.adapter_folder import load_for_inference
    from s4eca_peft.data.loaders import eval_dataloader, load_split
    from s4eca_peft.training.evaluation import evaluate_loop
    from s4eca_peft.tuner.layer import S4ECALayer

    model, processor, _ = load_for_inference(adapter)
    if mismatched_proxies:
        mismatch_proxies(model)
    vision_layers = [m for m in model.modules() if isinstance(m, S4ECALayer) and m.role == "vision"]
    assert vision_layers, "the model has no vision adapters"
    for layer in vision_layers:
        layer.enable_adapters(vision_adapters)
    val = load_split("synthetic", "val", image_size=128, num_samples=128, version=version)
    return evaluate_loop(model, eval_dataloader(val, processor, batch_size=32), desc="val")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, dict[str, float]]:
    """The reduced default run with the real expressions and with one constant word, side by side: their val
    scores."""
    output = tmp_path_factory.mktemp("learning")
    script = [sys.executable, str(REPO / "examples" / "train.py")]
    return train_two_at_a_time({
        "language": [*script, *DEFAULT_RUN],
        "constant": [*script, *DEFAULT_RUN, "--constant_expression", "object"],
    }, output)


def test_reduced_default_run_learns_language(trained, minilm_path):
    scores = trained
    assert {s["num_samples"] for s in scores.values()} == {128}
    assert scores["language"]["mIoU"] > scores["constant"]["mIoU"] + 0.02
    assert scores["language"]["oIoU"] > scores["constant"]["oIoU"]


@pytest.fixture(scope="module")
def reference_scores(minilm_path) -> dict[str, dict[str, float]]:
    """The shipped reference adapter's val metrics as it is, with mismatched proxies, and with its vision adapters
    off."""
    from s4eca_peft.modeling.packaged import REFERENCE_ADAPTER, reference_adapter_installed

    if not reference_adapter_installed():
        pytest.skip("the reference adapter is not installed (tools/install_reference_adapter.py)")
    scores = {"matched": validation_scores(REFERENCE_ADAPTER, mismatched_proxies=False),
              "mismatched": validation_scores(REFERENCE_ADAPTER, mismatched_proxies=True),
              "vision adapters off": validation_scores(REFERENCE_ADAPTER, mismatched_proxies=False,
                                                       vision_adapters=False)}
    print({f"{name} {metric}": round(100 * s[metric], 2) for name, s in scores.items() for metric in ("mIoU", "oIoU")})
    return scores


def test_the_default_models_trained_vision_adapters_carry_the_language(reference_scores):
    matched, mismatched = reference_scores["matched"], reference_scores["mismatched"]
    # adapters that ignore their proxies score exactly the same (tests/tuner/test_language_use.py)
    assert mismatched["mIoU"] < matched["mIoU"] - 0.10
    assert mismatched["oIoU"] < matched["oIoU"]


def test_the_default_models_trained_vision_adapters_shape_its_masks(reference_scores):
    with_adapters, without = reference_scores["matched"], reference_scores["vision adapters off"]
    assert without["mIoU"] < with_adapters["mIoU"] - 0.05
    assert without["oIoU"] < with_adapters["oIoU"]
