"""Inference with a trained S4ECA adapter: `S4ECASegmenter`, its sliding windows and pictures."""

import sys

from ..adapter_folder import AdapterBackboneMismatchError, load_for_inference, save_for_inference
from .segmenter import ReferringPrediction, S4ECASegmenter, overlay_prediction, resolve_dtype
from .windows import WindowStitcher, sliding_window_starts

# The folder format lives below training and inference (`s4eca_peft.adapter_folder`); its earlier import path,
# `s4eca_peft.inference.adapter_folder`, names the same module.
sys.modules[f"{__name__}.adapter_folder"] = sys.modules[save_for_inference.__module__]

__all__ = ["AdapterBackboneMismatchError", "ReferringPrediction", "S4ECASegmenter", "WindowStitcher",
           "load_for_inference", "overlay_prediction", "resolve_dtype", "save_for_inference", "sliding_window_starts"]
