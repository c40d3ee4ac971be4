"""Training S4ECA adapters: the Accelerate loop (`main` runs ``s4eca-train``; `training_function` takes the
`TrainConfig` the command line fills), checkpoints, validation, the model card and the Hub push."""

from .arguments import (
    DataArguments,
    EvalArguments,
    ModelArguments,
    S4ECAArguments,
    TrainConfig,
    TrainingArguments,
    parse_eval_args,
    parse_train_args,
)
from .hub import push_adapter_to_hub
from .loop import main, set_training_mode, training_function, training_step
from .model_card import ModelCardInfo, render_model_card

__all__ = [
    "DataArguments",
    "EvalArguments",
    "ModelArguments",
    "ModelCardInfo",
    "S4ECAArguments",
    "TrainConfig",
    "TrainingArguments",
    "main",
    "parse_eval_args",
    "parse_train_args",
    "push_adapter_to_hub",
    "render_model_card",
    "set_training_mode",
    "training_function",
    "training_step",
]
