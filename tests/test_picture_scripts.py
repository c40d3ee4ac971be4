"""The scripts that draw the pictures in docs/images import and parse their arguments (drawing them needs trained
adapters and minutes, so only `--help` runs here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.mark.parametrize("script", sorted(p.name for p in IMAGES.glob("make_*.py")))
def test_picture_script_help(script):
    done = subprocess.run([sys.executable, str(IMAGES / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout and "--adapter" in done.stdout
