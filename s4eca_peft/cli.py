"""Console scripts: ``s4eca-train``, ``s4eca-eval``, ``s4eca-predict``, ``s4eca-prepare-data``,
``s4eca-pretrain-backbone``. A known error ends a command with one line on stderr and exit status 2 (`run_command`)."""

from __future__ import annotations

from .command_errors import run_command


def train_main(argv: list[str] | None = None) -> None:
    from .training.loop import main

    run_command("s4eca-train", main, argv)


def eval_main(argv: list[str] | None = None) -> None:
    from .training.evaluation import eval_main as run

    run_command("s4eca-eval", run, argv)


def predict_main(argv: list[str] | None = None) -> None:
    from .predict_command import predict_main as run

    raise SystemExit(run(argv))


def prepare_data_main(argv: list[str] | None = None) -> None:
    from .data.prepare import prepare_data_main as run

    raise SystemExit(run_command("s4eca-prepare-data", run, argv))


def pretrain_backbone_main(argv: list[str] | None = None) -> None:
    from .pretraining.command import main

    main(argv)
