"""Hugging Face Space entry point: serves an S4ECA adapter with ``s4eca-demo``'s app.

The adapter is the Space's ``adapter/`` folder (a folder written by ``save_for_inference``), or the Hub repo named
by the ``S4ECA_ADAPTER`` variable, at the commit or branch in ``S4ECA_ADAPTER_REVISION``. Spaces reach the app on
port 7860 from outside the container, so it listens on all addresses there; locally,
``python examples/space/app.py`` does the same (use ``s4eca-demo`` for the loopback-only default).
"""

from __future__ import annotations

import os
from pathlib import Path

from s4eca_peft.demo.launch import main


def space_arguments(environ: dict[str, str] | None = None) -> list[str]:
    """``s4eca-demo`` arguments from the Space's variables."""
    environ = dict(os.environ if environ is None else environ)
    adapter = environ.get("S4ECA_ADAPTER") or str(Path(__file__).resolve().parent / "adapter")
    arguments = ["--adapter", adapter, "--host", "0.0.0.0", "--port", "7860"]
    if environ.get("S4ECA_ADAPTER_REVISION"):
        arguments += ["--revision", environ["S4ECA_ADAPTER_REVISION"]]
    return arguments


if __name__ == "__main__":
    main(space_arguments())
