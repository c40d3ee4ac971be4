"""Training S4ECA adapters: the Accelerate loop, run setup, checkpoints, validation, the model card and Hub push.

`main` is what ``s4eca-train`` and ``examples/train.py`` run.
"""

from .hub import push_adapter_to_hub
from .loop import main, training_function
from .model_card import ModelCardInfo, render_model_card

__all__ = ["ModelCardInfo", "main", "push_adapter_to_hub", "render_model_card", "training_function"]
