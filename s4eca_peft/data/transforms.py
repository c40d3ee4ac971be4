"""Seeded training augmentations that keep the expression true: `horizontal_flip` (which swaps left/right words)
and `PhotometricJitter` (colour names stay true for moderate factors). Resizing and normalising is the processor's
job. RGB PIL images stay PIL images (uint8, fast C paths); any other image becomes an ``(H, W, 3)`` float32 array in
[0, 1] by the rule of `s4eca_peft.modeling.image_io`. Masks are ``(H, W)`` arrays.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image

from ..modeling.image_io import load_image, read_image_file

AugmentImage = Union[Image.Image, np.ndarray]
_GREY = np.array([0.299, 0.587, 0.114])

# each word and its mirror image (left/right, west/east and their compounds); matched as whole words, so
# "north-west" and "upper-left" are covered
_MIRROR_PAIRS = [("left" + end, "right" + end) for end in ("", "most", "hand")] + [
    (start + "west" + end, start + "east" + end)
    for start, ends in (("", ("", "ern", "ernmost", "ward", "wards")), ("north", ("", "ern")), ("south", ("", "ern")))
    for end in ends
]
_MIRROR = {a: b for a, b in _MIRROR_PAIRS} | {b: a for a, b in _MIRROR_PAIRS}
_MIRROR_RE = re.compile(r"\b(" + "|".join(sorted(_MIRROR, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _match_case(word: str, template: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word.capitalize() if template[0].isupper() else word


def swap_left_right(expression: str) -> str:
    """The expression of the mirrored image: "left" <-> "right", "leftmost" <-> "rightmost", "west" <-> "east"
    (and their compounds), as whole words, keeping case ("Left" -> "Right", "LEFT" -> "RIGHT")."""
    return _MIRROR_RE.sub(lambda m: _match_case(_MIRROR[m.group(0).lower()], m.group(0)), expression)


def flip_mask(mask: Any) -> np.ndarray | None:
    """``mask`` ``(H, W)`` mirrored left-right (None stays None)."""
    return None if mask is None else np.ascontiguousarray(np.asarray(mask)[:, ::-1])


def horizontal_flip(image: AugmentImage, mask: Any, expression: str) -> tuple[AugmentImage, Any, str]:
    """Mirrors ``image`` (PIL or ``(H, W, C)`` array) and ``mask`` (``(H, W)``, or None) left-right and rewrites
    the expression with `swap_left_right`."""
    flipped = (image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if isinstance(image, Image.Image)
               else np.ascontiguousarray(np.asarray(image)[:, ::-1]))
    return flipped, flip_mask(mask), swap_left_right(expression)


@dataclass
class PhotometricJitter:
    """Random brightness, contrast and saturation factors from ``[1 - x, 1 + x]`` (0 turns one off): brightness
    scales, saturation blends each pixel with its grey (ITU-R 601 luma), contrast with the image's mean grey; the
    three compose into one affine colour map, applied in one pass and clipped once."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"PhotometricJitter.{name} must lie in [0, 1), got {value}.")

    def affine(self, rng: np.random.Generator, mean_rgb: np.ndarray) -> np.ndarray:
        """A ``(3, 4)`` map ``[A | offset]`` (``out = A @ rgb + offset``) for an image with channel means
        ``mean_rgb``; draws the three factors from ``rng``."""
        b, c, s = (rng.uniform(1 - x, 1 + x) for x in (self.brightness, self.contrast, self.saturation))
        matrix = b * (c * s * np.eye(3) + c * (1 - s) * np.outer(np.ones(3), _GREY))
        offset = b * (1 - c) * float(_GREY @ np.asarray(mean_rgb, np.float64))
        return np.concatenate([matrix, np.full((3, 1), offset)], axis=1)

    def __call__(self, image: AugmentImage, rng: np.random.Generator) -> AugmentImage:
        """RGB PIL image -> jittered RGB PIL image; ``(H, W, 3)`` float array in [0, 1] -> float32 array in [0, 1]."""
        if isinstance(image, Image.Image) and image.mode == "RGB":
            sample = image.reduce(4) if min(image.size) >= 16 else image  # the mean of a box-reduced copy
            transform = self.affine(rng, np.asarray(sample, np.float64).mean(axis=(0, 1)))
            return image.convert("RGB", matrix=tuple(transform.ravel()))
        array = np.asarray(image, dtype=np.float32)
        transform = self.affine(rng, array.reshape(-1, 3).mean(axis=0)).astype(np.float32)
        out = array @ transform[:, :3].T + transform[:, 3]
        return np.clip(out, 0.0, 1.0, out=out)


class TrainTransform:
    """Training augmentation of one sample dict (``image``, ``mask``, ``expression``, optionally ``category_mask``): a
    left-right flip with probability ``flip_prob`` that rewrites the expression, then ``jitter`` (True: the default `PhotometricJitter`;
    False or None: off). Draws from the ``rng`` given to `__call__`, else from its own generator seeded with
    ``seed``; returns a new dict, its image as the module docstring says."""

    def __init__(self, flip_prob: float = 0.5, jitter: PhotometricJitter | bool | None = True, seed: int = 0) -> None:
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"`flip_prob` must lie in [0, 1], got {flip_prob}.")
        self.flip_prob = float(flip_prob)
        self.jitter = PhotometricJitter() if jitter is True else (jitter or None)
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        rng = self.rng if rng is None else rng
        image = sample["image"]
        name = f"sample {sample.get('sample_id')!r} image"
        if isinstance(image, (str, os.PathLike)):
            image = read_image_file(image, name)
        if not (isinstance(image, Image.Image) and image.mode == "RGB"):
            image = load_image(image, name=name)
        mask, expression = sample.get("mask"), sample["expression"]
        flipped = {}
        if rng.random() < self.flip_prob:
            image, mask, expression = horizontal_flip(image, mask, expression)
            if "category_mask" in sample:
                flipped["category_mask"] = flip_mask(sample["category_mask"])
        if self.jitter is not None:
            image = self.jitter(image, rng)
        return {**sample, "image": image, "mask": mask, "expression": expression, **flipped}
