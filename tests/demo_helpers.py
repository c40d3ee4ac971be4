"""A tiny adapter whose mask splits a given scene, so that demo tests compare non-trivial masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from test_inference import build_tiny_adapter

from s4eca_peft.inference import S4ECASegmenter, save_for_inference


def build_split_adapter(folder: Path, image: Path, expression: str) -> Path:
    """The random tiny test adapter with its head's output bias shifted so that about half of ``image`` is
    foreground for ``expression`` at threshold 0.5 (a random head predicts nearly uniform low probabilities)."""
    segmenter = S4ECASegmenter.from_pretrained(build_tiny_adapter(folder / "raw"), device="cpu")
    median = float(np.median(segmenter.predict(image, expression, return_probabilities=True).probabilities))
    heads = [m for n, m in segmenter.model.named_modules() if n.endswith("modules_to_save.default.classifier")]
    assert len(heads) == 1, "expected one trainable copy of the head's classifier"
    with torch.no_grad():
        heads[0].bias -= math.log(median / (1.0 - median))
    return save_for_inference(segmenter.model, segmenter.processor, folder / "split")
