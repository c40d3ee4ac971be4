"""The checks every sample record passes before a loader keeps it, whichever source it comes from: a dataset folder
(RefSegRS, RRSIS-D) or a prepared dataset read back from parquet.

Each check returns ``None`` for a valid value, or the problem as ``(kind, detail)`` with a kind of
`s4eca_peft.data.validation.PROBLEM_KINDS`, for the caller to report under its own record id and skip.
"""

from __future__ import annotations

import io
from typing import Any

from .masks import read_image_size, rle_runs, segmentation_to_rle
from .validation import (
    EMPTY_MASK,
    MALFORMED_RECORD,
    MISSING_EXPRESSION,
    SPLITS,
    UNREADABLE_FILE,
    WRONG_MASK_SIZE,
    brief,
)

Problem = tuple[str, str]
"""``(kind, detail)`` of one invalid record."""


def mask_problem(rle: Any, height: int, width: int, name: str = "mask") -> Problem | None:
    """``rle`` must be an RLE (``{"size": [H, W], "counts": ...}``) whose runs are non-negative and cover exactly
    ``H * W`` pixels (checked before anything decodes it), of the image's ``height`` x ``width``, with at least one
    foreground pixel."""
    if not isinstance(rle, dict):
        return MALFORMED_RECORD, f"{name}: expected an RLE dict with 'size' and 'counts', got {brief(rle)}"
    try:
        rle = segmentation_to_rle(rle, height, width)  # compressed: {"size": [H, W], "counts": str}
        runs = rle_runs(rle["counts"])
    except Exception as error:  # pycocotools raises several types on corrupt input
        return MALFORMED_RECORD, f"{name}: not a valid RLE mask ({type(error).__name__}: {error})"
    rows, columns = rle["size"]
    if min(runs, default=0) < 0 or sum(runs) != rows * columns:
        return MALFORMED_RECORD, (f"{name}: RLE runs cover {sum(runs)} pixels (or one is negative), its size "
                                    f"says {rows}x{columns}")
    if (rows, columns) != (height, width):
        return WRONG_MASK_SIZE, f"{name} is {rows}x{columns} (HxW), image is {height}x{width}"
    if not any(runs[1::2]):
        return EMPTY_MASK, f"{name} has no foreground pixel"
    return None


def expression_problem(expression: Any, name: str = "expression") -> Problem | None:
    """The expression must be text with at least one non-space character."""
    if not isinstance(expression, str) or not expression.strip():
        return MISSING_EXPRESSION, f"{name} is empty or not text ({brief(expression)})"
    return None


def record_problem(record: dict[str, Any], height: int, width: int, mask_name: str = "mask") -> Problem | None:
    """A record in the loaders' columns (`s4eca_peft.data.schema.COLUMNS`; ``mask`` as RLE) for an image of
    ``height`` x ``width``: ids are non-empty text, ``category`` text or None, then `expression_problem` and
    `mask_problem`."""
    for key in ("image_id", "sample_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            return MALFORMED_RECORD, f"{key} {brief(record.get(key))} is not a non-empty string"
    if record.get("category") is not None and not isinstance(record["category"], str):
        return MALFORMED_RECORD, f"category {brief(record['category'])} is not a string or null"
    return expression_problem(record.get("expression")) or mask_problem(record.get("mask"), height, width, mask_name)


def split_problem(value: Any, split: str) -> Problem | None:
    """A record read for ``split`` must be recorded in that split."""
    if value not in SPLITS:
        return MALFORMED_RECORD, f"split {brief(value)} is not one of {', '.join(SPLITS)}"
    if value != split:
        return MALFORMED_RECORD, f"split {value!r} in a file listed for split {split!r}"
    return None


def encoded_record_problem(record: dict[str, Any], split: str) -> Problem | None:
    """A row of a prepared dataset read for ``split``: its ``split`` (when the row records one, `split_problem`),
    its image (encoded bytes, as `datasets.Image` stores them; the header must be readable), then `record_problem`
    against that image's size."""
    if "split" in record:
        problem = split_problem(record["split"], split)
        if problem is not None:
            return problem
    image = record.get("image")
    data = image.get("bytes") if isinstance(image, dict) else None
    if not isinstance(data, (bytes, bytearray)) or not data:
        return MALFORMED_RECORD, f"image: expected encoded image bytes, got {brief(image)}"
    try:
        height, width = read_image_size(io.BytesIO(data))
    except Exception as error:  # PIL raises many types for unreadable data
        return UNREADABLE_FILE, f"image: cannot read the encoded image ({type(error).__name__})"
    return record_problem(record, height, width)
