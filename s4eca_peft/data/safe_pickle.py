"""Unpickling untrusted files (the RRSIS-D ``refs(unc).p``) with an allow-list of builtin types only."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

# Plain containers and scalars (list, dict, tuple, str, int, float, bool, None, bytes) have their own pickle
# opcodes and never reach `find_class`. These are the only globals a pickle of plain data may name: set,
# frozenset, bytearray and complex are rebuilt by calling their type, and protocols 0-2 write bytes as a call
# to `_codecs.encode(text, "latin1")`.
_ALLOWED = frozenset(
    {(module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset", "bytearray", "complex")}
    | {("_codecs", "encode")}
)  # "__builtin__" is how Python 2 pickles spell "builtins"


class UnsafePickleError(ValueError):
    """A pickle names a class or function outside the allow-list of builtin containers and scalars."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="utf-8")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to unpickle {module}.{name}; this file is untrusted input and may only "
            "hold builtin containers and scalars (list, dict, tuple, set, str, int, float, bool, None, bytes)."
        )


def load_untrusted_pickle(path: str | os.PathLike) -> Any:
    """Loads a pickle of plain data; raises `UnsafePickleError` (naming the file and class) for anything else.

    Nothing the file names outside the allow-list is imported or called, so a malicious payload never runs.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return _RestrictedUnpickler(handle, str(path)).load()
        except UnsafePickleError:
            raise
        except Exception as error:  # truncated or corrupt pickles raise many types
            raise ValueError(f"{path}: not a readable pickle: {type(error).__name__}: {error}") from error
