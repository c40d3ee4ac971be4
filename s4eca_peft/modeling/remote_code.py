"""Loading transformers configs and tokenizers without ever running code shipped in a folder or Hub repo
(docs/security.md): every ``Auto*.from_pretrained`` of this package goes through `auto_from_pretrained`."""

from __future__ import annotations

import os
from typing import Any


def refuse_remote_code(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without ``trust_remote_code``; a caller asking for ``trust_remote_code=True`` gets a ValueError."""
    kwargs = dict(kwargs)
    if kwargs.pop("trust_remote_code", False):
        raise ValueError(
            "`trust_remote_code=True` is refused: this package never runs code shipped with a model, tokenizer or "
            "adapter. Use backbones and tokenizers of classes that transformers provides.")
    return kwargs


def auto_from_pretrained(auto_class: Any, name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)``; a folder or repo that needs
    its own code raises a ValueError naming it."""
    kwargs = refuse_remote_code(kwargs)
    try:
        return auto_class.from_pretrained(str(name_or_path), trust_remote_code=False, **kwargs)
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise ValueError(
            f"{str(name_or_path)!r} asks to run code from its own files (an `auto_map` in its config.json or "
            f"tokenizer_config.json, loaded by {auto_class.__name__}); this package never runs such code. Use a "
            "model or tokenizer of a class that transformers provides.") from error
