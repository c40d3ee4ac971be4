"""`torch.compile` of the S4ECA adapters: a step with an adapter in every vision block is bound by kernel launches
(each small operation and its backward is one), and compiling fuses them. The frozen blocks stay eager (their large
matmuls gain little), which keeps compilation short.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .layer import S4ECALayer


def compile_adapters(model: nn.Module, **compile_kwargs: Any) -> int:
    """Compile every S4ECA adapter module of `model` (text and vision, every adapter name) in place; returns how many.

    Uses `nn.Module.compile`, so names, the state dict and the saved adapter are unchanged; adapters added later stay
    eager. `compile_kwargs` go to `torch.compile`, by default ``dynamic=False`` (one graph per feature-map shape):
    inductor fails on symbolic feature-map sizes here.
    """
    compile_kwargs.setdefault("dynamic", False)
    adapters = [adapter for module in model.modules() if isinstance(module, S4ECALayer)
                for attribute in module.adapter_layer_names for adapter in getattr(module, attribute).values()]
    if not adapters:
        raise ValueError("`compile_adapters` found no S4ECA adapter in the model; call it after `get_peft_model`.")
    for adapter in adapters:
        adapter.compile(**compile_kwargs)
    return len(adapters)
