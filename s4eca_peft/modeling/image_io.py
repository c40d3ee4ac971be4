"""Reading images (PIL images, numpy arrays and paths alike) into float RGB arrays by one rule: docs/architecture.md,
"Image conversion rule"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]

STRETCH_PERCENTILES = (2.0, 98.0)  # display stretch of integer images other than uint8, per channel

MAX_IMAGE_PIXELS = 1 << 26
"""Largest image file decoded whole by default (67,108,864 pixels, 8192 x 8192: about 0.8 GB as float RGB), checked
from the file's header before decoding; ``s4eca-predict --max_pixels`` raises it."""


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.array(image, dtype=np.uint16)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif image.mode in ("LA", "1"):
        image = image.convert("L")
    return np.asarray(image)


def read_image_file(path: str | os.PathLike, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An image file decoded in full (a truncated or corrupt file raises here, naming it), as a PIL image. An image
    of more than ``max_pixels`` pixels is refused from its header, before decoding."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no image file at {str(path)!r}.")
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > max_pixels:
                raise ValueError(f"{opened.width} x {opened.height} = {opened.width * opened.height} pixels is more "
                             f"than the limit of {max_pixels} (raise it with --max_pixels, or use a GeoTIFF, read "
                             "window by window)")
            opened.load()
            return opened.copy()
    except Exception as error:  # PIL raises many types for unreadable files
        raise ValueError(f"{name}: cannot read image file {str(path)!r}: {error}") from error


def load_image(image: ImageInput, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Any accepted input -> ``(H, W, 3)`` float32 RGB in [0, 1] (the conversion rule); a file of more than
    ``max_pixels`` pixels is refused before decoding."""
    if isinstance(image, (str, os.PathLike)):
        array = _pil_to_array(read_image_file(image, name, max_pixels))
    elif isinstance(image, Image.Image):
        array = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"{name}: expected a PIL image, a numpy array or a path, got {type(image).__name__}.")
    return to_float_rgb(array, name)


def to_float_rgb(array: np.ndarray, name: str = "image") -> np.ndarray:
    """A ``(H, W)`` / ``(H, W, C)`` array -> ``(H, W, 3)`` float32 in [0, 1]."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{name}: expected an array of shape (H, W) or (H, W, C), got shape {array.shape}.")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ValueError(f"{name}: image has a zero side (height={height}, width={width}).")
    if channels not in (1, 3, 4):
        raise ValueError(f"{name}: expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels in the last axis (H, W, C), "
                         f"got {channels} (shape {array.shape}).")
    array = np.repeat(array, 3, axis=2) if channels == 1 else array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        data = array.astype(np.float32)
        return apply_stretch(data, *stretch_bounds(data.reshape(-1, data.shape[-1])))
    if np.issubdtype(array.dtype, np.floating):
        data = array.astype(np.float32)
        if not np.isfinite(data).all():
            raise ValueError(f"{name}: float image contains NaN or infinite values.")
        return np.clip(data * float_scale(data.max(initial=0.0)), 0.0, 1.0)
    raise ValueError(f"{name}: unsupported dtype {array.dtype}; expected uint8, another integer type or float.")


def stretch_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``STRETCH_PERCENTILES`` of ``(N, C)`` pixel values -> ``(low, high)``, each ``(C,)`` float32."""
    low, high = np.percentile(values.astype(np.float32), STRETCH_PERCENTILES, axis=0)
    return low.astype(np.float32), high.astype(np.float32)


def apply_stretch(data: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(..., C)`` values stretched linearly from ``low`` to ``high`` (each ``(C,)``) onto [0, 1], clipped."""
    data = data.astype(np.float32)
    return np.clip((data - low) / np.maximum(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def float_scale(maximum: float) -> float:
    """Factor that maps a float image with this maximum onto [0, 1]: 1, or 1/255 above 1 (a 0-255 range)."""
    return 1.0 / 255.0 if maximum > 1.0 else 1.0


def image_size_of(image: ImageInput) -> tuple[int, int]:
    """``(height, width)`` of an accepted input without converting its pixels where possible."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    with Image.open(image) as opened:
        return opened.height, opened.width
