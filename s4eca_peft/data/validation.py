"""Validation reports shared by the dataset loaders: what was skipped, and why."""

from __future__ import annotations

import reprlib
import warnings
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "val", "test")

# problem kinds, in the order reports list them
MISSING_IMAGE = "missing_image"
MISSING_MASK = "missing_mask"
MISSING_ANNOTATION = "missing_annotation"
UNREADABLE_FILE = "unreadable_file"
WRONG_MASK_SIZE = "wrong_mask_size"
EMPTY_MASK = "empty_mask"
DUPLICATE_ID = "duplicate_id"
MISSING_EXPRESSION = "missing_expression"
MALFORMED_RECORD = "malformed_record"
PROBLEM_KINDS = (MISSING_IMAGE, MISSING_MASK, MISSING_ANNOTATION, UNREADABLE_FILE, WRONG_MASK_SIZE, EMPTY_MASK,
                 DUPLICATE_ID, MISSING_EXPRESSION, MALFORMED_RECORD)


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 60, 60
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = _BRIEF.maxfrozenset = 4


def brief(value: Any) -> str:
    """A short repr of an untrusted value for messages (a few levels and items, never the whole object)."""
    return _BRIEF.repr(value)


class DataValidationWarning(UserWarning):
    """Issued once per load when records were skipped (see `ValidationReport`)."""


class InvalidRecord(Exception):
    """Raised by a record check: the record is skipped, reported as ``kind`` (of `PROBLEM_KINDS`) with ``detail``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


def check_split(split: str) -> str:
    """Returns ``split`` or raises a ValueError naming the allowed values."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(SPLITS)}; got {split!r}.")
    return split


@dataclass(frozen=True)
class Problem:
    """One skipped record: its kind, its id (``ref 12``, ``line 7``, a sample id...) and a readable reason."""

    kind: str
    record_id: str
    detail: str


@dataclass
class ValidationReport:
    """Outcome of validating one split: samples kept, samples skipped (one per expression, so a skipped ref with
    several expressions counts several) and ``problems``: each kind of `PROBLEM_KINDS` that occurred -> its `Problem`
    records."""

    dataset: str
    split: str
    num_samples: int = 0
    num_skipped: int = 0
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    def add(self, kind: str, record_id: str, detail: str, skipped: int = 1) -> None:
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"Unknown problem kind {kind!r}; expected one of {', '.join(PROBLEM_KINDS)}.")
        self.problems.setdefault(kind, []).append(Problem(kind, str(record_id), detail))
        self.num_skipped += skipped

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Number of problems per kind, in `PROBLEM_KINDS` order."""
        return {kind: len(self.problems[kind]) for kind in PROBLEM_KINDS if kind in self.problems}

    def summary(self, max_ids: int = 5) -> str:
        """One line: the count per kind and the first ``max_ids`` record ids of each."""
        parts = [f"{kind}: {count} ({', '.join(problem.record_id for problem in self.problems[kind][:max_ids])}"
                 f"{', ...' if count > max_ids else ''})" for kind, count in self.counts().items()]
        return "; ".join([self._head(), *parts]) if parts else self._head() + "; no problems."

    def details(self, max_per_kind: int = 20) -> str:
        """Several lines: each kind with up to ``max_per_kind`` problems and their reasons."""
        lines = [self._head() + ("; no problems." if self.ok else ":")]
        for kind, count in self.counts().items():
            lines.append(f"  {kind}: {count}")
            for problem in self.problems[kind][:max_per_kind]:
                lines.append(f"    {problem.record_id}: {problem.detail}")
            if count > max_per_kind:
                lines.append(f"    ... and {count - max_per_kind} more")
        return "\n".join(lines)

    def _head(self) -> str:
        return f"{self.dataset} {self.split}: kept {self.num_samples} samples, skipped {self.num_skipped}"

    def finish(self, strict: bool, stacklevel: int = 3) -> None:
        """Raises a ValueError listing the problems when ``strict``, else warns once (`DataValidationWarning`)."""
        if self.ok:
            return
        if strict:
            raise ValueError(f"Invalid records (strict=True):\n{self.details()}")
        warnings.warn(f"Skipped invalid records: {self.summary()}. Pass strict=True to raise instead.",
                      DataValidationWarning, stacklevel=stacklevel)
