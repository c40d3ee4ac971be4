"""The results store: one JSON list of records per benchmark under ``benchmarks/results/``, written atomically
(a temporary file moved into place), so that a rerun finds what is done and an interrupted one loses nothing."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class ResultsStore:
    """Records of one benchmark in a JSON file; `key` names what makes two records the same measurement."""

    def __init__(self, path: str | os.PathLike, key: Callable[[dict[str, Any]], Hashable]) -> None:
        self.path = Path(path)
        self.key = key

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in the order they were added (re-read: another process may have added some)."""
        return json.loads(self.path.read_text()) if self.path.exists() else []

    def find(self, key: Hashable) -> dict[str, Any] | None:
        return next((r for r in self.records() if self.key(r) == key), None)

    def put(self, record: dict[str, Any]) -> None:
        """Add `record`, replacing a stored one with the same key, and write the file atomically; concurrent writers
        (several runs of one benchmark) take turns on a lock file, so none loses another's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = [r for r in self.records() if self.key(r) != self.key(record)] + [record]
            tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.path.name}")
            tmp.write_text(json.dumps(records, indent=1))
            os.replace(tmp, self.path)
