"""Files and Hub repos: atomic writes of files and folders, bounded reads, and how Hub ids and Hub options are told
(docs/security.md, "What is never overwritten")."""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

PICKLE_SUFFIXES = frozenset({".bin", ".ckpt", ".pickle", ".pkl", ".pt", ".pth"})  # never loaded nor uploaded


class WriteError(OSError):
    """Writing an output failed: the message is one line naming the path and the cause."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_failed(path: str | os.PathLike, error: BaseException, hint: str = "") -> WriteError:
    """`WriteError` naming ``path`` and the cause ``error`` (its OS message alone for an `OSError`), then ``hint``."""
    if isinstance(error, WriteError) and not hint:
        return error
    while "previous exception" in str(error) and (error.__cause__ or error.__context__):  # GDAL's wrapped errors
        error = error.__cause__ or error.__context__
    cause = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
    code = error.errno if isinstance(error, OSError) else None
    return WriteError(code or errno.EIO, f"cannot write {str(path)!r}: {cause}{'; ' + hint if hint else ''}")


def check_target(path: str | os.PathLike) -> Path:
    """``path`` as a `Path`; a `WriteError` when something other than a regular file is there."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as error:
        raise write_failed(path, error) from error
    if not stat.S_ISREG(mode):
        raise WriteError(errno.EEXIST, f"cannot write {str(path)!r}: it exists and is not a regular file (a folder, "
                                       "link, device or pipe); outputs only replace regular files.")
    return path


@contextmanager
def private_folder(beside: str | os.PathLike, prefix: str = ".tmp-") -> Iterator[Path]:
    """A folder created exclusively (``tempfile.mkdtemp``) beside ``beside``, removed with its contents at the end."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=beside.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a path of the same name inside a `private_folder` beside ``path``, then rename it over
    ``path``, which may only be a regular file: a reader sees the old file or the complete new one. Anything but a
    ValueError or TypeError raised while writing becomes a one-line `WriteError` naming ``path``."""
    path = check_target(path)
    try:
        with private_folder(path) as folder:
            tmp = folder / path.name
            write(tmp)
            check_target(path)
            os.replace(tmp, path)
    except (ValueError, TypeError):
        raise
    except Exception as error:  # noqa: BLE001 - disk full, permissions, library write errors: one line
        raise write_failed(path, error) from error
    return path


def append_line(path: str | os.PathLike, line: str) -> Path:
    """Append ``line`` to the log ``path`` in one ``O_APPEND`` write; anything but a regular file is refused."""
    path = Path(path)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                raise OSError(errno.EEXIST, "it is not a regular file.")
            os.write(handle, (line.rstrip("\n") + "\n").encode("utf-8"))
        finally:
            os.close(handle)
    except OSError as error:
        raise write_failed(path, error) from error
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


MAX_JSON_DEPTH = 64  # nesting accepted in a JSON file or line (Python's parser recurses per level)

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def parse_json(text: str | bytes, source: str) -> Any:
    """``text`` parsed as JSON; a ValueError beginning with ``source`` when it is not JSON (line and column) or nests
    deeper than `MAX_JSON_DEPTH` (measured before parsing, so no depth exhausts the stack)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    depth = np.cumsum(np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D)))  # [{ minus ]}
    if depth.size and depth.max() > MAX_JSON_DEPTH:
        raise ValueError(f"{source}: JSON nested deeper than MAX_JSON_DEPTH = {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not UTF-8 text (byte {error.start}).") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}).") from error


def open_regular(path: str | os.PathLike, name: str = "file") -> BinaryIO:
    """``path`` opened for binary reading; anything but a regular file is a ValueError naming ``name``."""
    with suppress(IsADirectoryError):
        handle = open(path, "rb", opener=lambda file, flags: os.open(file, flags | getattr(os, "O_NONBLOCK", 0)))
        if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return handle
        handle.close()
    raise ValueError(f"{name}: {str(path)!r} is not a regular file (a folder, device or pipe).")


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # renameat2: paths relative to the working directory; swap the two paths


def exchange_paths(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where the system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc >= 2.28 (macOS, Windows, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, f"cannot swap {str(first)!r} with it: {os.strerror(code)}", str(second))


def recover_folder_swap(target: str | os.PathLike) -> None:
    """Finish what an interrupted `atomic_write_folder` of ``target`` left: a previous folder set aside while
    ``target`` is missing is renamed back; other leftovers beside it are removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return

    def beside(prefix: str) -> list[str]:
        return glob.glob(os.path.join(glob.escape(str(target.parent)), glob.escape(prefix) + "*"))

    aside = sorted(beside(f".{target.name}.old-"), key=os.path.getmtime)
    if aside and not os.path.lexists(target):
        os.rename(aside.pop(), target)  # the complete previous folder
    for leftover in [*aside, *beside(f".{target.name}.tmp-")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if exchange_paths(staging, target):
        shutil.rmtree(staging)  # now the previous folder
        return
    aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"  # recovered by recover_folder_swap
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside)


def atomic_write_folder(target: str | os.PathLike, write: Callable[[Path], Any],
                        check_replaceable: Callable[[Path, Path], None] | None = None) -> Path:
    """Call ``write(tmp)`` on an empty folder in a `private_folder` beside ``target``, then put it at ``target`` in one
    step (`exchange_paths`, else a rename aside that `recover_folder_swap` completes): a reader, or a process killed
    at any point, finds the previous folder or the complete new one. ``check_replaceable(target, tmp)``, called once
    ``tmp`` is written, may raise to keep an existing ``target``."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise NotADirectoryError(f"{str(target)!r} is not a folder; it cannot be replaced by one.")
    recover_folder_swap(target)
    with private_folder(target, prefix=f".{target.name}.tmp-") as private:
        staging = private / target.name
        staging.mkdir()  # mode from the umask, like any folder the user makes
        try:
            write(staging)
        except (ValueError, TypeError):
            raise
        except Exception as error:  # noqa: BLE001 - disk full, permissions, library write errors: one line
            raise write_failed(target, error) from error
        if check_replaceable is not None and target.is_dir():
            check_replaceable(target, staging)
        _swap_in(staging, target)
    return target


def is_path_like(name_or_path: str | os.PathLike) -> bool:
    """True when ``name_or_path`` can only mean a local path: it exists, is absolute, starts with ``.`` or ``~``,
    holds a backslash, or its first part is a local folder (``outputs/s4eca`` beside an ``outputs/`` folder)."""
    name = str(name_or_path)
    if Path(name).exists() or os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name:
        return True
    first, slash, _ = name.partition("/")
    return bool(slash) and Path(first).is_dir()


def is_hub_id(name_or_path: str | os.PathLike | None) -> bool:
    """True for a Hub repo id (``owner/name`` or ``name``) that is not path-like (`is_path_like`)."""
    return bool(name_or_path) and not is_path_like(name_or_path) and is_hub_id_spelling(str(name_or_path))


def is_hub_id_spelling(name: str) -> bool:
    """Whether ``name`` is spelled like a Hub repo id (``owner/name`` or ``name``), whatever exists on disk."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    with suppress(HFValidationError):
        return validate_repo_id(name) is None
    return False


HUB_OPTIONS = ("revision", "cache_dir", "token")  # where and how a Hub repo is read


def hub_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub options (``HUB_OPTIONS``) set in ``options``, without those that are ``None``."""
    return {key: options[key] for key in HUB_OPTIONS if options.get(key) is not None}


def hub_snapshot(repo_id: str, revision: str | None = None, repo_type: str = "model",
                 allow_patterns: list[str] | None = None, cache_dir: str | os.PathLike | None = None,
                 token: Any = None) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision``; Hub errors become a ValueError naming both."""
    from huggingface_hub import errors, snapshot_download

    kind = "Hub dataset repo" if repo_type == "dataset" else "Hub repo"
    try:
        return Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type, allow_patterns=allow_patterns,
                                      cache_dir=cache_dir, token=token))
    except errors.RevisionNotFoundError as error:
        raise ValueError(f"Revision {revision!r} does not exist in {kind} {repo_id!r}.") from error
    except errors.RepositoryNotFoundError as error:
        raise ValueError(f"{kind} {repo_id!r} was not found (or is private: pass a token).") from error
    except (errors.LocalEntryNotFoundError, errors.EntryNotFoundError, errors.OfflineModeIsEnabled) as error:
        raise ValueError(f"Cannot get {kind} {repo_id!r} at revision {revision or 'main'!r}: not in the local cache "
                         f"and the Hub is not reachable ({error}).") from error


def snapshot_commit(snapshot: str | os.PathLike) -> str:
    """The commit sha of a `hub_snapshot` folder (huggingface_hub names it after the commit it resolved)."""
    return Path(snapshot).name


def pin_hub_revision(name_or_path: str | os.PathLike | None, revision: str | None = None, **hub_options: Any) -> str | None:
    """The commit ``revision`` of model repo ``name_or_path`` resolves to now; ``None`` for a folder or nothing."""
    if not is_hub_id(name_or_path):
        if name_or_path and revision is not None:
            raise ValueError(f"{str(name_or_path)!r} is a folder, not a Hub repo: revision {revision!r} cannot be "
                             "applied to it.")
        return None
    options = hub_kwargs({**hub_options, "revision": revision})
    return snapshot_commit(hub_snapshot(str(name_or_path), allow_patterns=["config.json"], **options))
