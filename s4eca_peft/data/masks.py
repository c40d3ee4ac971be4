"""Masks: COCO polygons / RLE and 0-255 mask files to one compact form (compressed RLE), and back."""

from __future__ import annotations

import os
import warnings
from numbers import Real
from typing import IO, Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .validation import brief

MASK_THRESHOLD = 50  # RefSegRS masks are 0/255; foreground is > 50
MAX_OUTLINE_FACTOR = 200
"""Longest total polygon outline accepted, in multiples of the image's height + width (real outlines: a few)."""


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W)`` boolean mask -> compressed RLE ``{"size": [H, W], "counts": str}``."""
    array = np.asfortranarray(np.asarray(mask).astype(bool).astype(np.uint8))
    if array.ndim != 2:
        raise ValueError(f"Expected an (H, W) mask, got shape {array.shape}.")
    rle = mask_utils.encode(array)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Compressed RLE (as written by `encode_mask`) -> ``(H, W)`` boolean mask."""
    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}).astype(bool)


def merge_rles(rles: list[dict[str, Any]]) -> dict[str, Any]:
    """The union of compressed RLEs of one size (as written by `encode_mask`), without decoding them."""
    merged = mask_utils.merge([{"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")} for rle in rles],
                              intersect=False)
    return {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}


def rle_runs(counts: str) -> list[int]:
    """The run lengths (background first, alternating) of a compressed COCO RLE ``counts`` string, read in Python so
    that untrusted counts are checked before pycocotools decodes them. Each run is little-endian 5-bit groups, one
    character each (``chr(48 + group)``; bit 0x20: more groups follow; bit 0x10 of the last: the sign); from the
    third run on, a run is stored as its difference to the run two places before. Raises ValueError for a character
    outside the alphabet or a run cut off."""
    runs: list[int] = []
    position, length = 0, len(counts)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                raise ValueError(f"RLE counts end inside a run (at character {position})")
            group = ord(counts[position]) - 48
            if not 0 <= group < 64:
                raise ValueError(f"RLE counts hold {counts[position]!r} at {position}, outside the RLE alphabet")
            value |= (group & 0x1F) << shift
            shift += 5
            more = bool(group & 0x20)
            position += 1
            if not more and group & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, Real) and not isinstance(v, bool) for v in value)


def check_polygons(polygons: list[list[float]], height: int, width: int) -> None:
    """Refuse polygons that pycocotools cannot rasterise safely (a NaN crashes it, 1e9 asks for gigabytes) before it
    sees them: finite coordinates within one image size of the image, outlines at most `MAX_OUTLINE_FACTOR` times
    ``height + width`` long (docs/security.md)."""
    outline = 0.0
    for number, polygon in enumerate(polygons):
        xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
        if len(xs) != len(ys):
            raise ValueError(f"polygon {number} has an odd number of coordinates ({len(polygon)}); expected x, y "
                             "pairs")
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise ValueError(f"polygon {number} has a NaN or infinite coordinate")
        for axis, values, side in (("x", xs, width), ("y", ys, height)):
            low, high = float(values.min()), float(values.max())
            if low < -side or high > 2 * side:
                raise ValueError(f"polygon {number} has {axis} coordinates in [{low:g}, {high:g}], far outside an "
                                 f"image of {width}x{height} (WxH); accepted: [{-side}, {2 * side}]")
        steps = np.maximum(np.abs(np.diff(xs, append=xs[:1])), np.abs(np.diff(ys, append=ys[:1])))
        outline += float(steps.sum())
    if outline > MAX_OUTLINE_FACTOR * (height + width):
        raise ValueError(f"polygon outlines are {outline:.0f} pixels long, more than {MAX_OUTLINE_FACTOR}x the "
                         f"image's height + width ({height + width}); refused as too costly to rasterise")


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` -> compressed RLE: polygons (``[x1, y1, x2, y2, ...]`` lists rasterised at ``height``
    x ``width``; parts under three points have no area and are ignored), uncompressed RLE (``counts`` a list) or
    compressed RLE (``counts`` a string). Raises ValueError describing what is wrong otherwise."""
    if isinstance(segmentation, list):
        polygons = [segmentation] if _is_number_list(segmentation) else segmentation
        if not all(_is_number_list(polygon) for polygon in polygons):
            raise ValueError("polygon segmentation must be a list of [x1, y1, x2, y2, ...] number lists")
        polygons = [[float(v) for v in polygon] for polygon in polygons if len(polygon) >= 6]
        if not polygons:
            raise ValueError("polygon segmentation has no polygon with at least three points")
        check_polygons(polygons, height, width)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, int(height), int(width)))
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ValueError(f"RLE 'size' must be [height, width] with positive integers, got {brief(size)}")
        if isinstance(counts, list):
            if not all(isinstance(v, int) and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
                raise ValueError(f"uncompressed RLE 'counts' must be non-negative integers summing to "
                                 f"{size[0] * size[1]}")
            rle = mask_utils.frPyObjects(segmentation, size[0], size[1])
        elif isinstance(counts, (str, bytes)):
            rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            mask_utils.area(rle)  # raises on corrupt counts
        else:
            raise ValueError(f"RLE 'counts' must be a list (uncompressed) or a string (compressed), got "
                             f"{brief(counts)}")
    else:
        raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}  # pycocotools gives bytes


def read_image_size(path: str | os.PathLike | IO[bytes], decode: bool = False) -> tuple[int, int]:
    """``(height, width)`` from an image file's header, after decoding every pixel when ``decode`` (so that a
    truncated or corrupt file raises here); PIL's own warnings are silenced (the caller reports)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.height, image.width


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """A mask image (0/255 grey, 1-bit, or RGB(A)) -> ``(H, W)`` boolean mask, foreground where > 50."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.load()
            array = np.asarray(image)
    if array.dtype == np.bool_:
        return array.copy()
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel or RGB mask, got shape {array.shape}")
    return array > MASK_THRESHOLD
