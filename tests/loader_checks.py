"""A check both dataset loaders' tests share: bad records are skipped with one warning that names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from s4eca_peft.data import DataValidationWarning


def load_warning_once(load: Callable[[], Any], expected: dict[str, list[str]]) -> Any:
    """``load()`` warns exactly once, naming each problem kind with its count and record ids; returns its dataset."""
    with pytest.warns(DataValidationWarning) as caught:
        data = load()
    assert len(caught) == 1
    message = str(caught[0].message)
    for kind, ids in expected.items():
        assert f"{kind}: {len(ids)} ({', '.join(ids)})" in message
    return data
