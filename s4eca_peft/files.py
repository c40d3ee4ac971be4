"""Files and Hub repos: atomic writes, which files load through pickle, and how Hub ids and Hub options are told.

One home for each of these, used by training, inference and the model card alike.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES: frozenset[str] = frozenset({".bin", ".ckpt", ".pickle", ".pkl", ".pt", ".pth"})
"""Suffixes of files that load through pickle (which can run code): never loaded, never uploaded."""


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path`` (``os.replace``): a reader
    sees the old file or the complete new one, never a part. The temporary file is created exclusively under an
    unpredictable name (nothing planted there is followed), and removed when ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)  # O_EXCL, unguessable
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def is_path_like(name_or_path: str | os.PathLike) -> bool:
    """True when ``name_or_path`` can only mean a local path: it exists, is absolute, starts with ``.`` or ``~``,
    holds a backslash, or its first part is a local folder (``outputs/s4eca`` beside an ``outputs/`` folder)."""
    name = str(name_or_path)
    if Path(name).exists() or os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name:
        return True
    first, slash, _ = name.partition("/")
    return bool(slash) and Path(first).is_dir()


def is_hub_id(name_or_path: str | os.PathLike | None) -> bool:
    """True for a Hub repo id (``owner/name`` or ``name``); false for anything path-like (`is_path_like`), a name
    with more than one ``/``, and nothing."""
    if not name_or_path:
        return False
    name = str(name_or_path)
    if is_path_like(name):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


HUB_OPTIONS = ("revision", "cache_dir", "token")
"""Keyword arguments that say where and how a Hub repo is read."""


def hub_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub options (``HUB_OPTIONS``) set in ``options``, without those that are ``None``."""
    return {key: options[key] for key in HUB_OPTIONS if options.get(key) is not None}
