"""Inference with a trained S4ECA adapter: the saved-adapter folder format, `S4ECASegmenter` and ``s4eca-predict``."""

from ..adapter_folder import AdapterBackboneMismatchError, load_for_inference, save_for_inference
from .segmenter import ReferringPrediction, S4ECASegmenter, overlay_prediction, resolve_dtype, sliding_window_starts

__all__ = [
    "AdapterBackboneMismatchError",
    "ReferringPrediction",
    "S4ECASegmenter",
    "load_for_inference",
    "overlay_prediction",
    "resolve_dtype",
    "save_for_inference",
    "sliding_window_starts",
]
