"""Errors of the S4ECA tuner that callers tell apart by type."""


class AdapterBackboneMismatchError(ValueError):
    """A saved adapter does not fit the base model it is loaded into: its backbones differ in depth or width from
    those the adapter was trained on."""


class AdapterFileError(ValueError):
    """An adapter's own files are unreadable, of another method, or contradict each other (not a base mismatch)."""
