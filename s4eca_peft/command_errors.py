"""How every console script ends on a known error: one line on stderr and exit status 2 (``--debug`` shows the
traceback instead). `s4eca_peft.cli` and the modules runnable with ``python -m`` both use it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

KNOWN_ERRORS = (OSError, ValueError, FloatingPointError)  # bad input or an unusable environment, not a bug


def run_command(prog: str, command: Callable[[list[str]], Any], argv: Sequence[str] | None) -> Any:
    """``command(argv)`` with ``--debug`` taken out of ``argv``; a known error becomes one line and exit status 2."""
    words = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in words
    words = [word for word in words if word != "--debug"]
    try:
        return command(words)
    except KNOWN_ERRORS as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{prog}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
