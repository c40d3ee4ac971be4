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
from .masks import merge_rles, segmentation_to_rle
from .records import CATEGORY_MASK, check_expression, check_mask, image_size
from .safe_pickle import load_untrusted_pickle
from .validation import (
    DUPLICATE_ID,
    MALFORMED_RECORD,
    MISSING_ANNOTATION,
    MISSING_EXPRESSION,
    MISSING_IMAGE,
    SPLITS,
    WRONG_MASK_SIZE,
    InvalidRecord,
    ValidationReport,
    brief,
    check_split,
)

DATASET_NAME = "RRSIS-D"
LAYOUT = "<root>/rrsisd/refs(unc).p, <root>/rrsisd/instances.json, <root>/images/rrsisd/JPEGImages/"


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _sentence_text(sentence: Any) -> str | None:
    """The ``raw`` text of a refcoco sentence (``sent`` if ``raw`` is empty), whitespace-normalised, or None."""
    texts = [sentence.get("raw"), sentence.get("sent")] if isinstance(sentence, dict) else []
    return next((" ".join(text.split()) for text in texts if isinstance(text, str) and text.strip()), None)


def _index(entries: list[Any]) -> tuple[dict[Any, dict[str, Any]], Counter]:
    """The entries of an ``instances.json`` list by id (the first of each id), and how often each id occurs."""
    valid = [entry for entry in entries if isinstance(entry, dict) and _is_id(entry.get("id"))]
    return {entry["id"]: entry for entry in reversed(valid)}, Counter(entry["id"] for entry in valid)


class _Scanner:
    """Checks refs one by one against ``instances.json`` and the images; a ref that fails is reported and skipped."""

    def __init__(self, paths: dict[str, Path], decode_images: bool = False) -> None:
        data = parse_json(paths["instances"].read_bytes(), str(paths["instances"]))  # names the file; nesting bounded
        if not (isinstance(data, dict) and isinstance(data.get("images"), list)
                and isinstance(data.get("annotations"), list)):
            raise ValueError(f"{paths['instances']}: expected a COCO object with 'images' and 'annotations' lists.")
        self.entries = {"image": _index(data["images"]), "annotation": _index(data["annotations"])}
        self.by_image_category: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for annotation in self.entries["annotation"][0].values():
            key = (annotation.get("image_id"), annotation.get("category_id"))
            self.by_image_category.setdefault(key, []).append(annotation)
        self.category_rles: dict[tuple[Any, Any], dict[str, Any]] = {}  # one union per (image, category)
        categories, _ = _index(data.get("categories") or [])
        self.category_names = {key: c["name"] for key, c in categories.items() if isinstance(c.get("name"), str)}
        self.images, self.decode_images = paths["images"], decode_images
        self.seen_refs: set[Any] = set()
        self.seen_samples: set[str] = set()

    def _unique(self, what: str, key: Any) -> dict[str, Any]:
        """The one ``what`` (``"image"`` or ``"annotation"``) of id ``key`` in instances.json."""
        entries, counts = self.entries[what]
        if key not in entries:
            kind = MISSING_IMAGE if what == "image" else MISSING_ANNOTATION
            raise InvalidRecord(kind, f"{what} id {key!r} is not in instances.json")
        if counts[key] > 1:
            raise InvalidRecord(DUPLICATE_ID, f"{what} id {key!r} appears {counts[key]} times in instances.json")
        return entries[key]

    def _image(self, ref: dict[str, Any]) -> tuple[Path, int, int]:
        """The ref's image file and its size, which must be the one instances.json gives."""
        image_id = ref["image_id"]
        image = self._unique("image", image_id)
        file_name, height, width = image.get("file_name"), image.get("height"), image.get("width")
        if not (isinstance(file_name, str) and isinstance(height, int) and isinstance(width, int)):
            raise InvalidRecord(MALFORMED_RECORD, f"image {image_id!r} in instances.json lacks file_name/height/width")
        relative = PurePosixPath(file_name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise InvalidRecord(MALFORMED_RECORD, f"image file_name {file_name!r} is not a path inside JPEGImages/")
        path = self.images / relative
        if not path.is_file():
            raise InvalidRecord(MISSING_IMAGE, f"no image file {path}")
        size = image_size(path, f"image {path}", self.decode_images)
        if size != (height, width):
            raise InvalidRecord(WRONG_MASK_SIZE, f"image {path} is {size[0]}x{size[1]} (HxW), instances.json says "
                                                 f"{height}x{width}")
        return path, height, width

    def _mask(self, ref: dict[str, Any], height: int, width: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ref's annotation and its mask as RLE."""
        ann_id = ref["ann_id"]
        annotation = self._unique("annotation", ann_id)
        if annotation.get("image_id") != ref["image_id"]:
            owner = brief(annotation.get("image_id"))
            raise InvalidRecord(MALFORMED_RECORD, f"annotation {ann_id!r} belongs to image {owner}, the ref to "
                                                  f"{ref['image_id']!r}")
        return annotation, self._annotation_rle(annotation, height, width)

    @staticmethod
    def _annotation_rle(annotation: dict[str, Any], height: int, width: int) -> dict[str, Any]:
        """An annotation's segmentation as a checked RLE of the image's size."""
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), height, width)
        except Exception as error:  # pycocotools raises several types on corrupt input
            detail = f"annotation {annotation['id']!r}: cannot decode segmentation: {error}"
            raise InvalidRecord(MALFORMED_RECORD, detail) from error
        check_mask(rle, height, width, name=f"annotation {annotation['id']!r} mask")
        return rle

    def _category_mask(self, ref: dict[str, Any], annotation: dict[str, Any], height: int,
                       width: int) -> dict[str, Any] | None:
        """Every annotation in the ref's image of the ref's annotation's category, that annotation among them, as
        one RLE (built once per image and category); None when the annotation has no category id. One that cannot
        be decoded makes the ref invalid, naming it."""
        key = (ref["image_id"], annotation.get("category_id"))
        if not _is_id(key[1]):
            return None
        if key not in self.category_rles:
            self.category_rles[key] = merge_rles([self._annotation_rle(each, height, width)
                                                  for each in self.by_image_category[key]])
        return self.category_rles[key]

    def scan_ref(self, ref: dict[str, Any], report: ValidationReport, index: int) -> list[dict[str, Any]]:
        sentences = ref.get("sentences")
        n = len(sentences) if isinstance(sentences, list) else 1
        ids_ok = all(_is_id(ref.get(key)) for key in ("ref_id", "ann_id", "image_id"))
        if not ids_ok or not isinstance(sentences, list):
            detail = "needs ref_id, ann_id, image_id (int or str) and a 'sentences' list"
            report.add(MALFORMED_RECORD, f"refs[{index}]", detail, n)
            return []
        rid = f"ref {ref['ref_id']}"
        try:
            if ref["ref_id"] in self.seen_refs:
                raise InvalidRecord(DUPLICATE_ID, "ref_id already used by an earlier ref; kept the first")
            self.seen_refs.add(ref["ref_id"])
            path, height, width = self._image(ref)
            annotation, rle = self._mask(ref, height, width)
            category_mask = self._category_mask(ref, annotation, height, width)
        except InvalidRecord as error:
            report.add(error.kind, rid, error.detail, n)
            return []
        if not sentences:
            report.add(MISSING_EXPRESSION, rid, "the ref has no sentences", 0)
        category_id = ref.get("category_id", annotation.get("category_id"))
        category = self.category_names.get(category_id) if _is_id(category_id) else None
        records = []
        for position, sentence in enumerate(sentences):
            sent_id = sentence.get("sent_id", position) if isinstance(sentence, dict) else position
            where = f"{rid} sentence {position}"
            if not _is_id(sent_id):
                report.add(MALFORMED_RECORD, where, f"{where}: sent_id {brief(sent_id)} is not an int or str")
                continue
            sample_id = f"{ref['ref_id']}_{sent_id}"
            text = _sentence_text(sentence)
            try:
                check_expression(text, f"{where}: its 'raw' or 'sent' text")
                if sample_id in self.seen_samples:
                    raise InvalidRecord(DUPLICATE_ID, f"{rid}: sentence id {sent_id!r} repeats; kept the first")
            except InvalidRecord as error:
                report.add(error.kind, sample_id, error.detail)
                continue
            self.seen_samples.add(sample_id)
            records.append({"image": str(path), "mask": rle, "expression": text, "image_id": str(ref["image_id"]),
                            "sample_id": sample_id, "category": category, CATEGORY_MASK: category_mask})
        return records


def scan_rrsisd(root: str | os.PathLike, splits: Iterable[str] = SPLITS,
                decode_images: bool = False) -> dict[str, tuple[list[dict[str, Any]], ValidationReport]]:
    """Valid records and the validation report of each split (a ref whose split is none of train/val/test is reported
    in each); ``decode_images`` decodes every image in full (slow) so that truncated files are reported too. Raises
    FileNotFoundError naming a missing file of the layout, ValueError for an unreadable ``refs(unc).p`` or
    ``instances.json``, and `UnsafePickleError` for a pickle that names anything but builtin containers."""
    splits = [check_split(split) for split in splits]
    root = Path(root)
    paths = {"refs": root / "rrsisd" / "refs(unc).p", "instances": root / "rrsisd" / "instances.json",
             "images": root / "images" / "rrsisd" / "JPEGImages"}
    for name, path in paths.items():
        if not (path.is_dir() if name == "images" else path.is_file()):
            raise FileNotFoundError(f"RRSIS-D layout: missing {path} (expected {LAYOUT}).")
    refs = load_untrusted_pickle(paths["refs"])
    if not isinstance(refs, list):
        raise ValueError(f"{paths['refs']}: expected a list of refs (dicts), got {type(refs).__name__}.")
    scanner = _Scanner(paths, decode_images)
    results = {split: ([], ValidationReport(DATASET_NAME, split)) for split in splits}
    for index, ref in enumerate(refs):
        split = ref.get("split") if isinstance(ref, dict) else None
        if split not in SPLITS:
            for _, report in results.values():
                report.add(MALFORMED_RECORD, f"refs[{index}]", f"not a ref dict with split in {SPLITS}: {brief(ref)}")
        elif split in results:
            records, report = results[split]
            records.extend(scanner.scan_ref(ref, report, index))
    for records, report in results.values():
        report.num_samples = len(records)
    return results


def validate_rrsisd(root: str | os.PathLike, splits: Iterable[str] = SPLITS,
                    decode_images: bool = False) -> dict[str, ValidationReport]:
    """The `ValidationReport` of each split (no warning, no dataset); see `scan_rrsisd` for ``decode_images``."""
    return {split: report for split, (_, report) in scan_rrsisd(root, splits, decode_images).items()}


def load_rrsisd(root: str | os.PathLike, split: str, strict: bool = False, revision: str | None = None,
                cache_dir: str | os.PathLike | None = None, token: Any = None) -> datasets.Dataset:
    """One RRSIS-D split as a `datasets.Dataset` (columns in `s4eca_peft.data.records.COLUMNS`).

    Every sentence of a ref is a sample: ``sample_id`` is ``"<ref_id>_<sent_id>"``, ``image_id`` the COCO image
    id (as a string), ``expression`` the sentence's ``raw`` text, ``category`` the COCO category name. Invalid
    records are skipped with one `DataValidationWarning`, or raise a ValueError listing them when ``strict``.

    ``root`` is the dataset's folder, or a Hub dataset repo id read at ``revision`` (``cache_dir`` and ``token``
    as for ``huggingface_hub``): a repo holding the dataset's zip is unpacked into the Hub cache and validated like a
    folder; a repo written by ``s4eca-prepare-data --push_to_hub`` is read back from its parquet files.
    """
    return read_dataset_split("rrsisd", DATASET_NAME, scan_rrsisd, root, split, strict, revision, cache_dir, token)
