"""Files and Hub repos: atomic writes, which files load through pickle, and how Hub ids and Hub options are told.

One home for each of these, used by training, inference and the model card alike.
"""

from __future__ import annotations

import json
import os
import re
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


COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
"""A full Hub commit sha (what a pinned revision is recorded as)."""


def hub_snapshot(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    allow_patterns: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: Any = None,
) -> Path:
    """Download (or find in the cache, offline) ``repo_id`` at ``revision`` with ``huggingface_hub.snapshot_download``;
    returns the snapshot folder, ``.../snapshots/<commit>``. Hub errors become a ValueError naming the repo and the
    revision."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = "Hub dataset repo" if repo_type == "dataset" else "Hub repo"
    try:
        folder = snapshot_download(
            repo_id, revision=revision, repo_type=repo_type, allow_patterns=allow_patterns, cache_dir=cache_dir,
            token=token,
        )
    except RevisionNotFoundError as error:
        raise ValueError(f"Revision {revision!r} does not exist in {kind} {repo_id!r}.") from error
    except RepositoryNotFoundError as error:
        raise ValueError(f"{kind} {repo_id!r} was not found (or is private: pass a token).") from error
    except (LocalEntryNotFoundError, EntryNotFoundError, OfflineModeIsEnabled) as error:
        raise ValueError(
            f"Cannot get {kind} {repo_id!r} at revision {revision or 'main'!r}: not in the local cache and the Hub "
            f"is not reachable ({error})."
        ) from error
    return Path(folder)


def snapshot_commit(snapshot: str | os.PathLike) -> str:
    """The commit sha of a Hub snapshot folder (huggingface_hub names it after the commit it resolved)."""
    commit = Path(snapshot).name
    if not COMMIT_HASH.match(commit):
        raise ValueError(f"{str(snapshot)!r} is not a Hub cache snapshot folder named after a commit sha.")
    return commit


def pin_hub_revision(name_or_path: str | os.PathLike | None, revision: str | None = None, **hub_options: Any) -> str | None:
    """The commit that ``revision`` (a branch, tag or commit; ``None`` for the default branch) of model repo
    ``name_or_path`` resolves to now, so a later load gets the same files; ``None`` for a folder or nothing (a
    revision given for a folder raises a ValueError). ``hub_options``: ``cache_dir`` and ``token``."""
    if not is_hub_id(name_or_path):
        if name_or_path and revision is not None:
            raise ValueError(
                f"{str(name_or_path)!r} is a folder, not a Hub repo: revision {revision!r} cannot be applied to it."
            )
        return None
    options = {key: hub_options[key] for key in ("cache_dir", "token") if hub_options.get(key) is not None}
    snapshot = hub_snapshot(str(name_or_path), revision, allow_patterns=["config.json"], **options)
    return snapshot_commit(snapshot)
