"""Console scripts: ``s4eca-train``, ``s4eca-eval``, ``s4eca-predict``, ``s4eca-prepare-data``."""

from __future__ import annotations


def train_main(argv: list[str] | None = None) -> None:
    from .training.loop import main

    main(argv)


def eval_main(argv: list[str] | None = None) -> None:
    from .training.evaluation import eval_main as run

    run(argv)


def predict_main(argv: list[str] | None = None) -> None:
    from .inference.predict import predict_main as run

    raise SystemExit(run(argv))


def prepare_data_main(argv: list[str] | None = None) -> None:
    from .data.prepare import prepare_data_main as run

    raise SystemExit(run(argv))
