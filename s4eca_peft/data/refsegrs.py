"""RefSegRS: ``<root>/images/<id>.tif``, ``<root>/masks/<id>.tif`` (0/255) and ``output_phrase_<split>.txt``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from .hub import read_dataset_split
from .masks import encode_mask, read_image_size, read_mask_file
from .records import record_problem
from .validation import (
    DUPLICATE_ID,
    MALFORMED_RECORD,
    MISSING_EXPRESSION,
    MISSING_IMAGE,
    MISSING_MASK,
    SPLITS,
    UNREADABLE_FILE,
    ValidationReport,
    check_split,
)

DATASET_NAME = "RefSegRS"
IMAGE_SUFFIX = ".tif"


def refsegrs_paths(root: str | os.PathLike) -> dict[str, Path]:
    """The files and folders of the RefSegRS layout under ``root``."""
    root = Path(root)
    paths = {"images": root / "images", "masks": root / "masks"}
    paths.update({split: root / f"output_phrase_{split}.txt" for split in SPLITS})
    return paths


def _require(path: Path, kind: str) -> None:
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise FileNotFoundError(f"RefSegRS layout: missing {kind} {path} (expected <root>/images/<id>.tif, "
                                "<root>/masks/<id>.tif and <root>/output_phrase_{train,val,test}.txt).")


def _valid_id(sample_id: str) -> bool:
    return sample_id not in (".", "..") and "/" not in sample_id and "\\" not in sample_id


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


def _scan_split(
    paths: dict[str, Path], split: str, decode_images: bool = False
) -> tuple[list[dict[str, Any]], ValidationReport]:
    report = ValidationReport(DATASET_NAME, split)
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record_id, sample_id, expression in _read_lines(paths[split], report):
        where = f"{paths[split].name} {record_id}"
        if not _valid_id(sample_id):
            report.add(MALFORMED_RECORD, sample_id, f"{where}: id is not a plain file name")
            continue
        if sample_id in seen:
            report.add(DUPLICATE_ID, sample_id, f"{where}: id already used earlier in this file; kept the first")
            continue
        seen.add(sample_id)
        image_path = paths["images"] / f"{sample_id}{IMAGE_SUFFIX}"
        mask_path = paths["masks"] / f"{sample_id}{IMAGE_SUFFIX}"
        if not image_path.is_file():
            report.add(MISSING_IMAGE, sample_id, f"{where}: no image file {image_path}")
            continue
        if not mask_path.is_file():
            report.add(MISSING_MASK, sample_id, f"{where}: no mask file {mask_path}")
            continue
        try:
            height, width = read_image_size(image_path, decode=decode_images)
        except Exception as error:  # PIL raises many types for unreadable files
            report.add(UNREADABLE_FILE, sample_id, f"cannot read image {image_path}: {error}")
            continue
        try:
            mask = read_mask_file(mask_path)
        except Exception as error:
            report.add(UNREADABLE_FILE, sample_id, f"cannot read mask {mask_path}: {error}")
            continue
        record = {"image": str(image_path), "mask": encode_mask(mask), "expression": expression, "image_id": sample_id,
                  "sample_id": sample_id, "category": None}
        problem = record_problem(record, height, width, mask_name=f"mask {mask_path} (foreground > 50)")
        if problem is not None:
            kind, detail = problem
            report.add(kind, sample_id, detail)
            continue
        records.append(record)
    report.num_samples = len(records)
    return records, report


def scan_refsegrs(
    root: str | os.PathLike, splits: Iterable[str] = SPLITS, decode_images: bool = False
) -> dict[str, tuple[list[dict[str, Any]], ValidationReport]]:
    """Valid records and the validation report of each split; raises FileNotFoundError on a wrong layout.
    ``decode_images`` decodes every image in full (slow) so that truncated files are reported too."""
    splits = [check_split(split) for split in splits]
    paths = refsegrs_paths(root)
    _require(paths["images"], "folder")
    _require(paths["masks"], "folder")
    for split in splits:
        _require(paths[split], "file")
    return {split: _scan_split(paths, split, decode_images) for split in splits}


def validate_refsegrs(
    root: str | os.PathLike, splits: Iterable[str] = SPLITS, decode_images: bool = False
) -> dict[str, ValidationReport]:
    """The `ValidationReport` of each split (no warning, no dataset); see `scan_refsegrs` for ``decode_images``."""
    return {split: report for split, (_, report) in scan_refsegrs(root, splits, decode_images).items()}


def load_refsegrs(root: str | os.PathLike, split: str, strict: bool = False, revision: str | None = None,
                  cache_dir: str | os.PathLike | None = None, token: Any = None) -> datasets.Dataset:
    """One RefSegRS split as a `datasets.Dataset` (columns in `s4eca_peft.data.schema.COLUMNS`).

    Each line of ``output_phrase_<split>.txt`` is a sample; ``image_id`` and ``sample_id`` are its id and
    ``category`` is None. Invalid records are skipped with one `DataValidationWarning`, or raise a ValueError
    listing them when ``strict``. ``root`` and the Hub options are those of `load_rrsisd`.
    """
    return read_dataset_split("refsegrs", DATASET_NAME, scan_refsegrs, root, split, strict, revision, cache_dir, token)
