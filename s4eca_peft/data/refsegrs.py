"""RefSegRS: ``<root>/images/<id>.tif``, ``<root>/masks/<id>.tif`` (0/255) and ``output_phrase_<split>.txt``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from .hub import read_dataset_split
from .masks import encode_mask, read_mask_file
from .records import check_record, image_size
from .validation import (
    DUPLICATE_ID,
    MALFORMED_RECORD,
    MISSING_EXPRESSION,
    MISSING_IMAGE,
    MISSING_MASK,
    SPLITS,
    UNREADABLE_FILE,
    InvalidRecord,
    ValidationReport,
    check_split,
)

DATASET_NAME = "RefSegRS"
LAYOUT = "<root>/images/<id>.tif, <root>/masks/<id>.tif, <root>/output_phrase_{train,val,test}.txt"


def _read_lines(path: Path, report: ValidationReport) -> Iterable[tuple[str, str, str]]:
    """Yields ``(record_id, id, expression)`` per non-blank line; reports lines it cannot use."""
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        record_id = f"line {number}"
        try:
            line = raw.decode("utf-8").lstrip("\ufeff").strip()  # a byte-order mark may open the file
        except UnicodeDecodeError as error:
            report.add(MALFORMED_RECORD, record_id, f"{path.name}: not UTF-8 text ({error})")
            continue
        if not line:
            continue  # blank lines are not records
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            report.add(MISSING_EXPRESSION, parts[0], f"{path.name} {record_id}: an id without an expression")
            continue
        yield record_id, parts[0], " ".join(parts[1].split())


def _record(root: Path, where: str, sample_id: str, expression: str, seen: set[str],
            decode_images: bool) -> dict[str, Any]:
    """The record of one line (``where`` names it), its id, image and mask checked."""
    if sample_id in (".", "..") or "/" in sample_id or "\\" in sample_id:
        raise InvalidRecord(MALFORMED_RECORD, f"{where}: id is not a plain file name")
    if sample_id in seen:
        raise InvalidRecord(DUPLICATE_ID, f"{where}: id already used earlier in this file; kept the first")
    seen.add(sample_id)
    image_path, mask_path = (root / folder / f"{sample_id}.tif" for folder in ("images", "masks"))
    if not image_path.is_file():
        raise InvalidRecord(MISSING_IMAGE, f"{where}: no image file {image_path}")
    if not mask_path.is_file():
        raise InvalidRecord(MISSING_MASK, f"{where}: no mask file {mask_path}")
    height, width = image_size(image_path, f"image {image_path}", decode_images)
    try:
        mask = read_mask_file(mask_path)
    except Exception as error:  # PIL raises many types for unreadable files
        raise InvalidRecord(UNREADABLE_FILE, f"cannot read mask {mask_path}: {error}") from error
    record = {"image": str(image_path), "mask": encode_mask(mask), "expression": expression, "image_id": sample_id,
              "sample_id": sample_id, "category": None}
    check_record(record, height, width, mask_name=f"mask {mask_path} (foreground > 50)")
    return record


def scan_refsegrs(root: str | os.PathLike, splits: Iterable[str] = SPLITS,
                  decode_images: bool = False) -> dict[str, tuple[list[dict[str, Any]], ValidationReport]]:
    """Valid records and the validation report of each split; raises FileNotFoundError on a wrong layout.
    ``decode_images`` decodes every image in full (slow) so that truncated files are reported too."""
    splits = [check_split(split) for split in splits]
    root = Path(root)
    required = {root / "images": "folder", root / "masks": "folder"}
    required.update({root / f"output_phrase_{split}.txt": "file" for split in splits})
    for path, kind in required.items():
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise FileNotFoundError(f"RefSegRS layout: missing {kind} {path} (expected {LAYOUT}).")
    results = {}
    for split in splits:
        report = ValidationReport(DATASET_NAME, split)
        phrases = root / f"output_phrase_{split}.txt"
        records, seen = [], set()
        for record_id, sample_id, expression in _read_lines(phrases, report):
            where = f"{phrases.name} {record_id}"
            try:
                records.append(_record(root, where, sample_id, expression, seen, decode_images))
            except InvalidRecord as error:
                report.add(error.kind, sample_id, error.detail)
        report.num_samples = len(records)
        results[split] = records, report
    return results


def validate_refsegrs(root: str | os.PathLike, splits: Iterable[str] = SPLITS,
                      decode_images: bool = False) -> dict[str, ValidationReport]:
    """The `ValidationReport` of each split (no warning, no dataset); see `scan_refsegrs` for ``decode_images``."""
    return {split: report for split, (_, report) in scan_refsegrs(root, splits, decode_images).items()}


def load_refsegrs(root: str | os.PathLike, split: str, strict: bool = False, revision: str | None = None,
                  cache_dir: str | os.PathLike | None = None, token: Any = None) -> datasets.Dataset:
    """One RefSegRS split as a `datasets.Dataset` (columns in `s4eca_peft.data.records.COLUMNS`).

    Each line of ``output_phrase_<split>.txt`` is a sample; ``image_id`` and ``sample_id`` are its id and
    ``category`` is None. Invalid records are skipped with one `DataValidationWarning`, or raise a ValueError
    listing them when ``strict``. ``root`` and the Hub options are those of `load_rrsisd`.
    """
    return read_dataset_split("refsegrs", DATASET_NAME, scan_refsegrs, root, split, strict, revision, cache_dir, token)
