"""Pictures a person would rather look at: training curves and mask overlays (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..files import atomic_write


def overlay_mask(image: np.ndarray | Image.Image, mask: np.ndarray, color: tuple[int, int, int] = (255, 40, 40),
                 alpha: float = 0.5, outline: np.ndarray | None = None) -> Image.Image:
    """Blend a boolean ``mask`` over an RGB image; ``outline`` (another mask) is drawn as a green edge."""
    base = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if base.dtype != np.uint8:
        base = (np.clip(base, 0, 1) * 255).astype(np.uint8)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != base.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {base.shape[:2]}.")
    out = base.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    if outline is not None:  # the outline's pixels that have a neighbour outside it
        padded = np.pad(np.asarray(outline, dtype=bool), 1)
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        out[padded[1:-1, 1:-1] & ~interior] = (40, 220, 40)
    return Image.fromarray(out.astype(np.uint8))


def save_image_atomic(image: Image.Image, path: str | os.PathLike) -> None:
    """Write a PNG through a temporary file and a rename."""
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def plot_training_curves(steps: Sequence[int], losses: Sequence[float], epochs: Sequence[dict],
                         path: str | os.PathLike) -> None:
    """Training loss per step and validation mIoU / oIoU per evaluation, side by side (no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="tight")
    left, right = fig.subplots(1, 2)
    if len(losses):
        left.plot(steps, losses, color="0.7", linewidth=0.8, label="loss")
        window = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        left.plot(steps[window - 1 :], smooth, color="C0", label=f"mean of {window}")
    left.set(xlabel="optimizer step", ylabel="BCE + Dice", title="training loss")
    left.legend()
    if epochs:
        at = [e["step"] for e in epochs]
        for key, color in (("mIoU", "C1"), ("oIoU", "C2"), ("precision@0.5", "C3")):
            right.plot(at, [100 * e[key] for e in epochs], marker="o", color=color, label=key)
    right.set(xlabel="optimizer step", ylabel="%", title="validation")
    right.legend()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
