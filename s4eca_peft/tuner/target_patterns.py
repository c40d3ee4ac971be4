"""Target regexes from an untrusted ``adapter_config.json``: refuse those whose matching can take exponential time,
read with the standard library's regex parser (docs/security.md)."""

from __future__ import annotations

try:  # Python 3.11+
    from re import _constants as sre_constants
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from typing import Any

MAX_PATTERN_REPEATS = 3
"""Repeating quantifiers (``*``, ``+``, ``{m,n}`` with n > 1) one target regex may hold."""

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)


class _Walk:
    """Visits a parsed pattern, counting quantifiers and refusing the constructs that backtrack exponentially."""

    def __init__(self) -> None:
        self.repeats = 0

    def items(self, items: Any, under_repeat: bool) -> None:
        for op, argument in items:
            self.item(op, argument, under_repeat)

    def item(self, op: Any, argument: Any, under_repeat: bool) -> None:
        if op in _REPEATS:
            _, high, body = argument
            if under_repeat:  # `?` too: `(a?){25}a{25}` backtracks as much as `(a+)+`
                raise ValueError("it nests quantifiers (like `(a+)+`), which can backtrack exponentially")
            if high > 1:
                self.repeats += 1
                if self.repeats > MAX_PATTERN_REPEATS:
                    raise ValueError(f"it holds more than {MAX_PATTERN_REPEATS} quantifiers (`*`, `+`, `{{m,n}}`)")
            self.items(body, under_repeat or high > 1)
        elif op is sre_constants.BRANCH:
            if under_repeat:
                raise ValueError("it repeats an alternation (like `(a|ab)*`), which can backtrack exponentially")
            for alternative in argument[1]:
                self.items(alternative, under_repeat)
        elif op is sre_constants.SUBPATTERN:
            self.items(argument[-1], under_repeat)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            self.items(argument[1], under_repeat)
        elif op is getattr(sre_constants, "ATOMIC_GROUP", None):
            self.items(argument, under_repeat)
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            raise ValueError("it uses a backreference")


def check_target_pattern(pattern: str) -> None:
    """Raise ValueError saying why ``pattern`` (a regex that compiles) could take exponential time to match."""
    _Walk().items(sre_parse.parse(pattern), under_repeat=False)
