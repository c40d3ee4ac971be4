"""The records every loader yields: their columns (`COLUMNS`, `FEATURES`), the dataset they make with masks decoded on
access (`records_to_dataset`), and the checks every record passes before a loader keeps it, whichever source it comes
from: a dataset folder (RefSegRS, RRSIS-D) or a prepared dataset read back from parquet. Each check raises
`InvalidRecord` for the caller to report under its own record id and skip.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import IO, Any

import datasets

from .masks import decode_rle, read_image_size, rle_runs, segmentation_to_rle
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

COLUMNS = ("image", "mask", "expression", "image_id", "sample_id", "category")
FAMILY = "family"
"""Optional column: the expression family of each sample (synthetic scenes carry one; real datasets do not)."""
CATEGORY_MASK = "category_mask"
"""Optional column: the mask (RLE, like ``mask``) of every object of the sample's category in its image, the target
among them, or None where the category is unknown. RRSIS-D records carry it (from its instances.json); training
batches it as ``category_labels`` for the head's category map."""

MASK_FEATURE = {"size": datasets.Sequence(datasets.Value("int32")), "counts": datasets.Value("string")}
FEATURES = datasets.Features({
    "image": datasets.Image(),  # paths (or encoded bytes), decoded to PIL only when a row is read
    "mask": MASK_FEATURE,  # compressed RLE; `decode_masks` turns it into an (H, W) boolean array on access
    **{name: datasets.Value("string") for name in COLUMNS[2:]},  # category: None where a dataset has none
})
OPTIONAL_FEATURES = {FAMILY: datasets.Value("string"), CATEGORY_MASK: MASK_FEATURE}
"""The optional columns a dataset has when every one of its records has them."""


def decode_masks(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``with_transform`` function: RLE ``mask`` (and `CATEGORY_MASK`) entries -> ``(H, W)`` boolean arrays (other
    columns unchanged)."""
    for name in ("mask", CATEGORY_MASK):
        if name in batch:
            batch[name] = [None if rle is None else decode_rle(rle) for rle in batch[name]]
    return batch


def features_for(columns: Sequence[str]) -> datasets.Features:
    """`FEATURES` and those of the `OPTIONAL_FEATURES` among ``columns``."""
    return datasets.Features({**FEATURES, **{name: OPTIONAL_FEATURES[name] for name in OPTIONAL_FEATURES
                                             if name in columns}})


def records_to_dataset(records: Sequence[dict[str, Any]]) -> datasets.Dataset:
    """Records with the `COLUMNS` keys (``mask`` as RLE; each of `OPTIONAL_FEATURES` too when every record has it)
    -> a `datasets.Dataset` that decodes masks on access: ``select``/``shuffle`` keep that transform,
    ``with_format``/``map`` replace it (re-apply `decode_masks` with ``with_transform`` then)."""
    optional = tuple(name for name in OPTIONAL_FEATURES if records and all(name in record for record in records))
    columns = {name: [record[name] for record in records] for name in COLUMNS + optional}
    return datasets.Dataset.from_dict(columns, features=features_for(optional)).with_transform(decode_masks)


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
        raise InvalidRecord(MALFORMED_RECORD, f"{name}: expected an RLE dict with 'size' and 'counts', got "
                                              f"{brief(rle)}")
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
    """A record in the loaders' columns (`COLUMNS`; ``mask`` as RLE) for an image of
    ``height`` x ``width``: ids are non-empty text, ``category`` text or None, then `check_expression` and
    `check_mask` (of `CATEGORY_MASK` too, where the record has one)."""
    for key in ("image_id", "sample_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise InvalidRecord(MALFORMED_RECORD, f"{key} {brief(record.get(key))} is not a non-empty string")
    if record.get("category") is not None and not isinstance(record["category"], str):
        raise InvalidRecord(MALFORMED_RECORD, f"category {brief(record['category'])} is not a string or null")
    check_expression(record.get("expression"))
    check_mask(record.get("mask"), height, width, mask_name)
    if record.get(CATEGORY_MASK) is not None:
        check_mask(record[CATEGORY_MASK], height, width, CATEGORY_MASK)


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
