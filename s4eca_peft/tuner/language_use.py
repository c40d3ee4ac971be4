"""Giving each image's vision adapters another image's language proxies: the probe behind *language use*, the drop
in mask quality under the swap (`s4eca_peft.training.evaluation.measure_language_use` measures it on a split).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .model import S4ECAModel

__all__ = ["MismatchedProxies", "mismatch_proxies"]


class MismatchedProxies:
    """The hooks `mismatch_proxies` placed: ``remove()`` them, or use the object as a context manager."""

    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> MismatchedProxies:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def _tuner(model: nn.Module) -> S4ECAModel:
    for candidate in (model, getattr(model, "module", None)):  # `module`: a distributed wrapper
        for tuner in (candidate, getattr(candidate, "base_model", None)):
            if isinstance(tuner, S4ECAModel):
                return tuner
    raise TypeError(f"`model` must carry S4ECA adapters (a PeftModel from get_peft_model(..., S4ECAConfig) or an "
                    f"S4ECAModel), got {type(model).__name__}; other PEFT methods have no language proxies to swap.")


def mismatch_proxies(model: nn.Module, shift: int = 1) -> MismatchedProxies:
    """From now on, image ``i`` of a batch has its vision adapters read the proxies of image ``i - shift``'s
    expression (`torch.roll`, from a hook on each text encoder with text adapters); all else, such as a head that
    reads the sentence, still reads its own. `model` is a PeftModel or S4ECAModel with S4ECA adapters. Returns the
    hooks, to ``remove()`` (or ``with mismatch_proxies(model): ...``).
    """
    tuner = _tuner(model)

    def swap(module: nn.Module, args: Any, output: Any) -> None:
        proxies = tuner.get_language_proxies()
        if proxies is not None:
            tuner.set_language_proxies(proxies.roll(shift, dims=0))

    return MismatchedProxies([encoder.register_forward_hook(swap) for encoder in tuner.routing.text_encoders])
