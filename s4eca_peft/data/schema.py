"""The columns every dataset of this package shares, and the transform that decodes masks on access."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from .masks import decode_rle

COLUMNS = ("image", "mask", "expression", "image_id", "sample_id", "category")
FAMILY = "family"
"""Optional column: the expression family of each sample (synthetic scenes carry one; real datasets do not)."""

FEATURES = datasets.Features(
    {
        # paths (or encoded bytes), decoded to PIL only when a row is read
        "image": datasets.Image(),
        # compressed RLE; `decode_masks` turns it into an (H, W) boolean array on access
        "mask": {"size": datasets.Sequence(datasets.Value("int32")), "counts": datasets.Value("string")},
        "expression": datasets.Value("string"),
        "image_id": datasets.Value("string"),
        "sample_id": datasets.Value("string"),
        "category": datasets.Value("string"),  # None where the dataset has no categories
    }
)


def decode_masks(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``with_transform`` function: RLE ``mask`` entries -> ``(H, W)`` boolean arrays (other columns unchanged)."""
    if "mask" in batch:
        batch["mask"] = [None if rle is None else decode_rle(rle) for rle in batch["mask"]]
    return batch


def records_to_dataset(records: Sequence[dict[str, Any]]) -> datasets.Dataset:
    """Records with the `COLUMNS` keys (``mask`` as RLE) -> a `datasets.Dataset` that decodes masks on access.

    The transform is a format: ``select``/``shuffle`` keep it; ``with_format``/``map`` replace it (re-apply
    `decode_masks` with ``with_transform`` then). When every record has a `FAMILY`, the dataset has that column too.
    """
    names = COLUMNS + ((FAMILY,) if records and all(FAMILY in record for record in records) else ())
    columns = {name: [record[name] for record in records] for name in names}
    features = FEATURES if len(names) == len(COLUMNS) else datasets.Features(
        {**FEATURES, FAMILY: datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(columns, features=features)
    return dataset.with_transform(decode_masks)
