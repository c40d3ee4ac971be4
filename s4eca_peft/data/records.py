"""The checks every sample record passes before a loader keeps it, whichever source it comes from: a dataset folder
(RefSegRS, RRSIS-D) or a prepared dataset read back from parquet. Each raises `InvalidRecord` for the caller to
report under its own record id and skip.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from .masks import read_image_size, rle_runs, segmentation_to_rle
from .validation import (
    EMPTY_MASK,
    MALFORMED_RECORD,
    MISSING_EXPRESSION,
    SPLITS,
    UNREADABLE_FILE,
    WRONG_MASK_SIZE,
    InvalidRecord,
    brief,
)


def image_size(source: str | os.PathLike | IO[bytes], what: str, decode: bool = False) -> tuple[int, int]:
    """`read_image_size`, an unreadable image raising `InvalidRecord` that names ``what``."""
    try:
        return read_image_size(source, decode)
    except Exception as error:  # PIL raises many types for unreadable data
        raise InvalidRecord(UNREADABLE_FILE, f"cannot read {what}: {type(error).__name__}: {error}") from error


def check_mask(rle: Any, height: int, width: int, name: str = "mask") -> None:
    """``rle`` must be an RLE (``{"size": [H, W], "counts": ...}``) whose runs are non-negative and cover exactly
    ``H * W`` pixels (checked before anything decodes it), of the image's ``height`` x ``width``, with at least one
    foreground pixel."""
    if not isinstance(rle, dict):
        raise InvalidRecord(MALFORMED_RECORD, f"{name}: expected an RLE dict with 'size' and 'counts', got {brief(rle)}")
    try:
        rle = segmentation_to_rle(rle, height, width)  # compressed: {"size": [H, W], "counts": str}
        runs = rle_runs(rle["counts"])
    except Exception as error:  # pycocotools raises several types on corrupt input
        detail = f"{name}: not a valid RLE mask ({type(error).__name__}: {error})"
        raise InvalidRecord(MALFORMED_RECORD, detail) from error
    rows, columns = rle["size"]
    if min(runs, default=0) < 0 or sum(runs) != rows * columns:
        raise InvalidRecord(MALFORMED_RECORD, f"{name}: RLE runs cover {sum(runs)} pixels (or one is negative), its "
                                              f"size says {rows}x{columns}")
    if (rows, columns) != (height, width):
        raise InvalidRecord(WRONG_MASK_SIZE, f"{name} is {rows}x{columns} (HxW), image is {height}x{width}")
    if not any(runs[1::2]):
        raise InvalidRecord(EMPTY_MASK, f"{name} has no foreground pixel")


def check_expression(expression: Any, name: str = "expression") -> None:
    """The expression must be text with at least one non-space character."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidRecord(MISSING_EXPRESSION, f"{name} is empty or not text ({brief(expression)})")


def check_record(record: dict[str, Any], height: int, width: int, mask_name: str = "mask") -> None:
    """A record in the loaders' columns (`s4eca_peft.data.schema.COLUMNS`; ``mask`` as RLE) for an image of
    ``height`` x ``width``: ids are non-empty text, ``category`` text or None, then `check_expression` and
    `check_mask`."""
    for key in ("image_id", "sample_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise InvalidRecord(MALFORMED_RECORD, f"{key} {brief(record.get(key))} is not a non-empty string")
    if record.get("category") is not None and not isinstance(record["category"], str):
        raise InvalidRecord(MALFORMED_RECORD, f"category {brief(record['category'])} is not a string or null")
    check_expression(record.get("expression"))
    check_mask(record.get("mask"), height, width, mask_name)


def check_encoded_record(record: dict[str, Any], split: str) -> None:
    """A row of a prepared dataset read for ``split``: its ``split`` (when the row records one) must be that split,
    its image encoded bytes (as `datasets.Image` stores them) with a readable header, then `check_record` against
    that image's size."""
    value = record.get("split", split)
    if value not in SPLITS:
        raise InvalidRecord(MALFORMED_RECORD, f"split {brief(value)} is not one of {', '.join(SPLITS)}")
    if value != split:
        raise InvalidRecord(MALFORMED_RECORD, f"split {value!r} in a file listed for split {split!r}")
    image = record.get("image")
    data = image.get("bytes") if isinstance(image, dict) else None
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidRecord(MALFORMED_RECORD, f"image: expected encoded image bytes, got {brief(image)}")
    check_record(record, *image_size(io.BytesIO(data), "the encoded image"))
