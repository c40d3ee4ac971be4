"""Run a snippet of Python in a child process under an address-space cap, for inputs built to exhaust memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_PRELUDE = """
import resource, sys
cap = {cap} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
"""


def run_capped(code: str, cap_mb: int = 1536, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Runs ``code`` with ``RLIMIT_AS`` at ``cap_mb`` MiB (torch and transformers need about 1 GiB of address space
    to import) and this checkout first on the path; returns the finished process (stdout and stderr as text). The
    timeout is generous: importing torch alone takes a minute on a busy machine."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.path.dirname(os.path.abspath(__file__))])}
    script = _PRELUDE.format(cap=cap_mb) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
