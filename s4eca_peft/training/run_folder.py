"""A training run owns its ``--output_dir``: ``s4eca_run.json`` names the run that wrote the folder, and
``.s4eca-train.lock`` keeps a second concurrent run out (docs/security.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

from ..files import write_json_atomic

RUN_FILE = "s4eca_run.json"
LOCK_FILE = ".s4eca-train.lock"
CHECKPOINT_DIR = "checkpoints"


class OutputDirError(ValueError):
    """``--output_dir`` holds another run, or another run is writing to it."""


def _is_resume_of(output_dir: Path, resume_from: str | None) -> bool:
    if resume_from in (None, "latest"):
        return resume_from == "latest"
    return Path(os.path.realpath(resume_from)).parent == Path(os.path.realpath(output_dir / CHECKPOINT_DIR))


def _read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; an empty dict for a missing or unreadable file (a lock or marker being written)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(owner: dict) -> bool:
    """Whether the lock's owner may still run: another host, or a process that exists on this one."""
    if owner.get("host") != socket.gethostname():
        return bool(owner)
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):  # another user's process, or a pid that is no number
        pass
    return True


def acquire_lock(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir/.s4eca-train.lock`` exclusively; refuse when a live run holds it. Returns the lock."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = output_dir / LOCK_FILE
    owner_text = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_json_object(lock)
            if _alive(owner):
                raise OutputDirError(
                    f"Another training run (process {owner.get('pid')} on {owner.get('host')}) is writing to "
                    f"--output_dir {str(output_dir)!r}; wait for it or choose another folder (remove {lock} only if "
                    "that run is gone)."
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that no longer exists
            continue
        with os.fdopen(handle, "w") as file:
            file.write(owner_text)
        return lock
    raise OutputDirError(f"Could not take the lock {lock}: another run took it at the same time.")


def release_lock(lock: Path) -> None:
    """Remove the lock this process holds (and nothing another process wrote there)."""
    if _read_json_object(lock).get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


def claim_output_dir(output_dir: str | os.PathLike, resume_from: str | None, overwrite: bool) -> str:
    """On the main process, with the lock held: refuse an ``output_dir`` that holds another run, else mark it as this
    run's; returns the run id (a resumed run keeps its own)."""
    output_dir = Path(output_dir)
    contents = sorted(p.name for p in output_dir.iterdir() if p.name != LOCK_FILE)
    resumed = _is_resume_of(output_dir, resume_from)
    if contents and not overwrite and not resumed:
        shown = ", ".join(contents[:5]) + (f" and {len(contents) - 5} more" if len(contents) > 5 else "")
        raise OutputDirError(f"--output_dir {str(output_dir)!r} already holds files of another run ({shown}). Pass "
                             "--resume_from_checkpoint latest to continue that run, --overwrite_output_dir to "
                             "replace it, or choose another --output_dir.")
    marker = output_dir / RUN_FILE
    if resumed and not overwrite:
        previous = _read_json_object(marker).get("run_id")
        if previous:
            return previous
    if overwrite:
        shutil.rmtree(output_dir / CHECKPOINT_DIR, ignore_errors=True)
    run_id = uuid.uuid4().hex
    write_json_atomic(marker, {"run_id": run_id})
    return run_id
