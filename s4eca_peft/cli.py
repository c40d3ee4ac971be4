"""Console scripts: ``s4eca-train``, ``s4eca-eval``, ``s4eca-predict``, ``s4eca-prepare-data``,
``s4eca-pretrain-backbone``.

A known error (bad input, a refused folder or file, a full disk, a non-finite loss) ends the command with one line on
stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

KNOWN_ERRORS = (OSError, ValueError, FloatingPointError)
"""What the commands raise for bad input or an unusable environment (not programming errors)."""


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


def train_main(argv: list[str] | None = None) -> None:
    from .training.loop import main

    run_command("s4eca-train", main, argv)


def eval_main(argv: list[str] | None = None) -> None:
    from .training.evaluation import eval_main as run

    run_command("s4eca-eval", run, argv)


def predict_main(argv: list[str] | None = None) -> None:
    from .inference.predict import predict_main as run

    raise SystemExit(run(argv))


def prepare_data_main(argv: list[str] | None = None) -> None:
    from .data.prepare import prepare_data_main as run

    raise SystemExit(run_command("s4eca-prepare-data", run, argv))


def pretrain_backbone_main(argv: list[str] | None = None) -> None:
    from .pretraining.command import main

    main(argv)
