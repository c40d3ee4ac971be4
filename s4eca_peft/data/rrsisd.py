"""RRSIS-D: refcoco-style ``refs(unc).p`` + COCO ``instances.json`` + ``images/rrsisd/JPEGImages``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import datasets

from ..files import parse_json
from .hub import read_dataset_split
from .masks import read_image_size, segmentation_to_rle
from .records import expression_problem, mask_problem
from .safe_pickle import load_untrusted_pickle
from .validation import (
    DUPLICATE_ID,
    MALFORMED_RECORD,
    MISSING_ANNOTATION,
    MISSING_EXPRESSION,
    MISSING_IMAGE,
    SPLITS,
    UNREADABLE_FILE,
    WRONG_MASK_SIZE,
    ValidationReport,
    brief,
    check_split,
)

DATASET_NAME = "RRSIS-D"
_LAYOUT = "<root>/rrsisd/refs(unc).p, <root>/rrsisd/instances.json and <root>/images/rrsisd/JPEGImages/"


def rrsisd_paths(root: str | os.PathLike) -> dict[str, Path]:
    """The files and folders of the RRSIS-D layout under ``root``."""
    root = Path(root)
    return {"refs": root / "rrsisd" / "refs(unc).p", "instances": root / "rrsisd" / "instances.json",
            "images": root / "images" / "rrsisd" / "JPEGImages"}


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _sentence_text(sentence: Any) -> str | None:
    """The ``raw`` text of a refcoco sentence (``sent`` if ``raw`` is empty), whitespace-normalised, or None."""
    if not isinstance(sentence, dict):
        return None
    for key in ("raw", "sent"):
        text = sentence.get(key)
        if isinstance(text, str) and text.strip():
            return " ".join(text.split())
    return None


class _Instances:
    """Index of ``instances.json``: images, annotations and category names by id, with id counts."""

    def __init__(self, path: Path) -> None:
        data = parse_json(path.read_bytes(), str(path))  # a ValueError naming the file; nesting bounded
        if not (isinstance(data, dict) and isinstance(data.get("images"), list)
                and isinstance(data.get("annotations"), list)):
            raise ValueError(f"{path}: expected a COCO object with 'images' and 'annotations' lists.")
        self.images, self.image_counts = self._index(data["images"])
        self.annotations, self.annotation_counts = self._index(data["annotations"])
        categories, _ = self._index(data.get("categories") or [])
        self.category_names = {key: c["name"] for key, c in categories.items() if isinstance(c.get("name"), str)}

    @staticmethod
    def _index(entries: list[Any]) -> tuple[dict[Any, dict[str, Any]], Counter]:
        index: dict[Any, dict[str, Any]] = {}
        counts: Counter = Counter()
        for entry in entries:
            if isinstance(entry, dict) and _is_id(entry.get("id")):
                index.setdefault(entry["id"], entry)
                counts[entry["id"]] += 1
        return index, counts


class _Scanner:
    """Checks refs one by one; each failed check reports the ref and skips it."""

    def __init__(self, paths: dict[str, Path], decode_images: bool = False) -> None:
        self.paths = paths
        self.decode_images = decode_images
        self.instances = _Instances(paths["instances"])
        self._image_sizes: dict[str, tuple[int, int] | str] = {}
        self.seen_refs: set[Any] = set()
        self.seen_samples: set[str] = set()

    def _image_size(self, path: Path) -> tuple[int, int] | str:
        """``(height, width)`` from the file header, or the error message."""
        key = str(path)
        if key not in self._image_sizes:
            try:
                self._image_sizes[key] = read_image_size(path, decode=self.decode_images)
            except Exception as error:  # PIL raises many types for unreadable files
                self._image_sizes[key] = f"{type(error).__name__}: {error}"
        return self._image_sizes[key]

    def _unique(self, what: str, key: Any, report: ValidationReport, rid: str, n: int) -> dict[str, Any] | None:
        """The one ``what`` (``"image"`` or ``"annotation"``) of id ``key``, or None after reporting it missing or
        repeated in instances.json."""
        instances = self.instances
        entries, counts = ((instances.images, instances.image_counts) if what == "image"
                           else (instances.annotations, instances.annotation_counts))
        if key not in entries:
            report.add(MISSING_IMAGE if what == "image" else MISSING_ANNOTATION, rid,
                       f"{what} id {key!r} is not in instances.json", n)
            return None
        if counts[key] > 1:
            report.add(DUPLICATE_ID, rid, f"{what} id {key!r} appears {counts[key]} times in instances.json", n)
            return None
        return entries[key]

    def _check_image(
        self, ref: dict[str, Any], report: ValidationReport, rid: str, n: int
    ) -> tuple[Path, int, int] | None:
        """The image path and its size, or None after reporting why the ref is skipped."""
        image_id = ref["image_id"]
        image = self._unique("image", image_id, report, rid, n)
        if image is None:
            return None
        file_name, height, width = image.get("file_name"), image.get("height"), image.get("width")
        if not (isinstance(file_name, str) and isinstance(height, int) and isinstance(width, int)):
            report.add(MALFORMED_RECORD, rid, f"image {image_id!r} in instances.json lacks file_name/height/width", n)
            return None
        relative = PurePosixPath(file_name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            report.add(MALFORMED_RECORD, rid, f"image file_name {file_name!r} is not a path inside JPEGImages/", n)
            return None
        path = self.paths["images"] / relative
        if not path.is_file():
            report.add(MISSING_IMAGE, rid, f"no image file {path}", n)
            return None
        size = self._image_size(path)
        if isinstance(size, str):
            report.add(UNREADABLE_FILE, rid, f"cannot read image {path}: {size}", n)
            return None
        if size != (height, width):
            report.add(WRONG_MASK_SIZE, rid, f"image {path} is {size[0]}x{size[1]} (HxW), instances.json says "
                                             f"{height}x{width}", n)
            return None
        return path, height, width

    def _check_mask(
        self, ref: dict[str, Any], report: ValidationReport, rid: str, n: int, height: int, width: int
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The annotation and its RLE, or None after reporting why the ref is skipped."""
        ann_id = ref["ann_id"]
        annotation = self._unique("annotation", ann_id, report, rid, n)
        if annotation is None:
            return None
        if annotation.get("image_id") != ref["image_id"]:
            owner = annotation.get("image_id")
            detail = f"annotation {ann_id!r} belongs to image {brief(owner)}, the ref to {ref['image_id']!r}"
            report.add(MALFORMED_RECORD, rid, detail, n)
            return None
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), height, width)
        except Exception as error:  # pycocotools raises several types on corrupt input
            report.add(MALFORMED_RECORD, rid, f"annotation {ann_id!r}: cannot decode segmentation: {error}", n)
            return None
        problem = mask_problem(rle, height, width, name=f"annotation {ann_id!r} mask")
        if problem is not None:
            report.add(problem[0], rid, problem[1], n)
            return None
        return annotation, rle

    def scan_ref(self, ref: dict[str, Any], report: ValidationReport, index: int) -> list[dict[str, Any]]:
        sentences = ref.get("sentences")
        n = len(sentences) if isinstance(sentences, list) else 1
        ids_ok = all(_is_id(ref.get(key)) for key in ("ref_id", "ann_id", "image_id"))
        if not ids_ok or not isinstance(sentences, list):
            detail = "needs ref_id, ann_id, image_id (int or str) and a 'sentences' list"
            report.add(MALFORMED_RECORD, f"refs[{index}]", detail, n)
            return []
        rid = f"ref {ref['ref_id']}"
        if ref["ref_id"] in self.seen_refs:
            report.add(DUPLICATE_ID, rid, "ref_id already used by an earlier ref; kept the first", n)
            return []
        self.seen_refs.add(ref["ref_id"])
        checked = self._check_image(ref, report, rid, n)
        if checked is None:
            return []
        path, height, width = checked
        checked = self._check_mask(ref, report, rid, n, height, width)
        if checked is None:
            return []
        annotation, rle = checked
        if not sentences:
            report.add(MISSING_EXPRESSION, rid, "the ref has no sentences", 0)
        category_id = ref.get("category_id", annotation.get("category_id"))
        category = self.instances.category_names.get(category_id) if _is_id(category_id) else None
        records = []
        for position, sentence in enumerate(sentences):
            sent_id = sentence.get("sent_id", position) if isinstance(sentence, dict) else position
            if not _is_id(sent_id):
                detail = f"{rid} sentence {position}: sent_id {brief(sent_id)} is not an int or str"
                report.add(MALFORMED_RECORD, f"{rid} sentence {position}", detail)
                continue
            sample_id = f"{ref['ref_id']}_{sent_id}"
            text = _sentence_text(sentence)
            problem = expression_problem(text, f"{rid} sentence {position}: its 'raw' or 'sent' text")
            if problem is not None:
                kind, detail = problem
                report.add(kind, sample_id, detail)
                continue
            if sample_id in self.seen_samples:
                report.add(DUPLICATE_ID, sample_id, f"{rid}: sentence id {sent_id!r} repeats; kept the first")
                continue
            self.seen_samples.add(sample_id)
            records.append({"image": str(path), "mask": rle, "expression": text, "image_id": str(ref["image_id"]),
                            "sample_id": sample_id, "category": category})
        return records


def scan_rrsisd(
    root: str | os.PathLike, splits: Iterable[str] = SPLITS, decode_images: bool = False
) -> dict[str, tuple[list[dict[str, Any]], ValidationReport]]:
    """Valid records and the validation report of each split; ``decode_images`` decodes every image in full (slow)
    so that truncated files are reported too, not only those whose header is unreadable.

    Raises FileNotFoundError naming a missing file of the layout, ValueError for an unreadable ``refs(unc).p``
    or ``instances.json``, and `UnsafePickleError` for a pickle that names anything but builtin containers.
    A ref whose split is not one of train/val/test is reported in every requested split.
    """
    splits = [check_split(split) for split in splits]
    paths = rrsisd_paths(root)
    for name, path in paths.items():
        if not (path.is_dir() if name == "images" else path.is_file()):
            raise FileNotFoundError(f"RRSIS-D layout: missing {path} (expected {_LAYOUT}).")
    refs = load_untrusted_pickle(paths["refs"])
    if not isinstance(refs, list):
        raise ValueError(f"{paths['refs']}: expected a list of refs (dicts), got {type(refs).__name__}.")
    scanner = _Scanner(paths, decode_images)
    results = {split: ([], ValidationReport(DATASET_NAME, split)) for split in splits}
    for index, ref in enumerate(refs):
        split = ref.get("split") if isinstance(ref, dict) else None
        if split in SPLITS:
            if split in results:
                records, report = results[split]
                records.extend(scanner.scan_ref(ref, report, index))
            continue
        for _, report in results.values():
            report.add(MALFORMED_RECORD, f"refs[{index}]", f"not a ref dict with split in {SPLITS}: {brief(ref)}")
    for records, report in results.values():
        report.num_samples = len(records)
    return results


def validate_rrsisd(
    root: str | os.PathLike, splits: Iterable[str] = SPLITS, decode_images: bool = False
) -> dict[str, ValidationReport]:
    """The `ValidationReport` of each split (no warning, no dataset); see `scan_rrsisd` for ``decode_images``."""
    return {split: report for split, (_, report) in scan_rrsisd(root, splits, decode_images).items()}


def load_rrsisd(root: str | os.PathLike, split: str, strict: bool = False, revision: str | None = None,
                cache_dir: str | os.PathLike | None = None, token: Any = None) -> datasets.Dataset:
    """One RRSIS-D split as a `datasets.Dataset` (columns in `s4eca_peft.data.schema.COLUMNS`).

    Every sentence of a ref is a sample: ``sample_id`` is ``"<ref_id>_<sent_id>"``, ``image_id`` the COCO image
    id (as a string), ``expression`` the sentence's ``raw`` text, ``category`` the COCO category name. Invalid
    records are skipped with one `DataValidationWarning`, or raise a ValueError listing them when ``strict``.

    ``root`` is the dataset's folder, or a Hub dataset repo id read at ``revision`` (``cache_dir`` and ``token``
    as for ``huggingface_hub``): a repo holding the dataset's zip is unpacked into the Hub cache and validated like a
    folder; a repo written by ``s4eca-prepare-data --push_to_hub`` is read back from its parquet files.
    """
    return read_dataset_split("rrsisd", DATASET_NAME, scan_rrsisd, root, split, strict, revision, cache_dir, token)
