"""Unpickling untrusted files (the RRSIS-D ``refs(unc).p``) with an allow-list of builtin types only: the opcode
stream is checked first, globals are allow-listed with wrapped constructors, and the loaded tree is measured
(docs/security.md).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1 << 30
"""Largest pickle read (the RRSIS-D refs file is a few megabytes)."""
MAX_DEPTH = 64
"""Deepest nesting of containers accepted (refcoco-style refs nest 5 levels)."""
EXPANSION_PER_BYTE = 16
"""Expanded size allowed per byte of file: plain data without shared references stays well below it."""
MIN_EXPANDED_SIZE = 1 << 20
"""Expanded size always allowed, so that tiny files of short shared strings load."""
_MAX_SCALAR_TEXT = 256  # longest string `complex()` may parse


class UnsafePickleError(ValueError):
    """A pickle names a class or function outside the allow-list, calls an allowed one with refused arguments, or
    describes an object too large or too deep to be plain data."""


def _refuse(source: str, what: str) -> UnsafePickleError:
    return UnsafePickleError(f"{source}: refusing to unpickle {what}; this file is untrusted input and may only hold "
                             "builtin containers and scalars (list, dict, tuple, set, str, int, float, bool, None, "
                             "bytes).")


def _allowed_constructors(source: str) -> dict[str, Any]:
    """The callables a pickle of plain data may name, each checking its arguments before it allocates."""

    def make_bytearray(*args: Any) -> bytearray:
        # protocols 0-2 write (text, encoding), 3-4 (bytes,); a size or an iterable is refused
        if (not args or (len(args) == 1 and isinstance(args[0], (bytes, bytearray)))
                or (len(args) == 2 and all(isinstance(a, str) for a in args))):
            return bytearray(*args)
        raise _refuse(source, f"bytearray({', '.join(type(a).__name__ for a in args)}) (a size or an iterable)")

    def make_collection(kind: type) -> Any:
        def build(*args: Any) -> set | frozenset:
            if not args or (len(args) == 1 and isinstance(args[0], (list, tuple))):
                return kind(*args)
            raise _refuse(source, f"{kind.__name__}({', '.join(type(a).__name__ for a in args)})")

        return build

    def make_complex(*args: Any) -> complex:
        numbers = len(args) <= 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
        if numbers or (len(args) == 1 and isinstance(args[0], str) and len(args[0]) <= _MAX_SCALAR_TEXT):
            return complex(*args)
        raise _refuse(source, f"complex({', '.join(type(a).__name__ for a in args)})")

    def encode(*args: Any) -> bytes:
        # protocols 0-2 write bytes as `_codecs.encode(text, "latin1")`; text is never longer than the file
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin1")
        raise _refuse(source, "_codecs.encode with anything but (text, 'latin1')")

    return {"bytearray": make_bytearray, "set": make_collection(set), "frozenset": make_collection(frozenset),
            "complex": make_complex, "encode": encode}


_ALLOWED_MODULES = {"builtins": {"bytearray", "set", "frozenset", "complex"}, "_codecs": {"encode"}}
_ALLOWED_MODULES["__builtin__"] = _ALLOWED_MODULES["builtins"]  # how Python 2 pickles spell "builtins"


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="utf-8")
        self._source, self._constructors = source, _allowed_constructors(source)

    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED_MODULES.get(module, ()):
            return self._constructors[name]
        raise _refuse(self._source, f"{module}.{name}")


def _check_shape(root: Any, source: str, budget: int) -> None:
    """Refuse cycles, nesting deeper than `MAX_DEPTH` and an expanded size above ``budget``; sizes are memoised per
    object, so shared references are measured in time linear in the distinct objects."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(value: Any, depth: int) -> int:
        if isinstance(value, (str, bytes, bytearray)):
            return 1 + len(value)
        if not isinstance(value, (list, tuple, dict, set, frozenset)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"{source}: containers nest deeper than {MAX_DEPTH} levels; refused.")
        if key in open_ids:
            raise UnsafePickleError(f"{source}: a container holds itself (a reference cycle); refused.")
        open_ids.add(key)
        items = value.items() if isinstance(value, dict) else ((item,) for item in value)
        total = 1
        for pair in items:
            for item in pair:
                total += size(item, depth + 1)
                if total > budget:
                    raise UnsafePickleError(f"{source}: the data expands to more than {budget} objects and "
                                            "characters (shared references make a small file describe a huge tree); "
                                            "refused.")
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def load_untrusted_pickle(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Loads a pickle of plain data; raises `UnsafePickleError` naming the file and what was refused (the checks:
    docs/security.md), and ValueError naming a truncated or corrupt file."""
    source = str(path)
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise UnsafePickleError(f"{source}: {size} bytes is more than the {max_bytes} bytes accepted; refused.")
    data = Path(path).read_bytes()
    try:
        for _ in pickletools.genops(io.BytesIO(data)):  # builds nothing: truncation and oversized lengths raise here
            pass
        value = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # corrupt pickles raise many types
        raise ValueError(f"{source}: not a readable pickle: {type(error).__name__}: {error}") from error
    _check_shape(value, source, max(MIN_EXPANDED_SIZE, EXPANSION_PER_BYTE * len(data)))
    return value
