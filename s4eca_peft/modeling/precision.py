"""Frozen weights stored in the compute dtype of mixed-precision training.

Under `torch.autocast` every matmul and convolution casts its float32 weight on every forward and keeps the copy for
backward; for frozen weights, storing them in the compute dtype once saves both the cast and the copy. Trainable
parameters and adapters stay in float32, so the optimizer and the saved adapter are unchanged.
"""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import ModulesToSaveWrapper
from torch import nn

COMPUTE_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""Accelerate's ``mixed_precision`` values and the dtype each computes in."""


def compute_dtype(mixed_precision: str | None) -> torch.dtype | None:
    """The dtype of `mixed_precision` (``"bf16"``, ``"fp16"``), or `None` for ``"no"``/`None` (full precision)."""
    if mixed_precision in (None, "no"):
        return None
    if mixed_precision not in COMPUTE_DTYPES:
        raise ValueError(
            f"mixed_precision={mixed_precision!r} has no compute dtype here; expected one of "
            f"{sorted(COMPUTE_DTYPES)} or 'no'.")
    return COMPUTE_DTYPES[mixed_precision]


def cast_frozen_parameters(module: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen floating-point parameters of `module` in `dtype`, in place; returns how many were cast.

    Left as they are: parameters that require grad, and every parameter peft saves as an adapter (those of every
    tuner layer's adapter modules, active or not, and of `modules_to_save` copies), so saved adapters keep their
    dtype. Only for models that run under `torch.autocast` with `dtype`: outside it, float32 inputs meet `dtype`
    weights.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating-point torch.dtype (e.g. torch.bfloat16), got {dtype!r}.")
    adapters = set()
    for part in module.modules():
        if isinstance(part, BaseTunerLayer):
            owned = [getattr(part, name) for name in part.adapter_layer_names if hasattr(part, name)]
        else:
            owned = [part.modules_to_save] if isinstance(part, ModulesToSaveWrapper) else []
        adapters.update(id(param) for owned_part in owned for param in owned_part.parameters())
    cast = 0
    for param in module.parameters():
        if param.requires_grad or id(param) in adapters or not param.is_floating_point() or param.dtype == dtype:
            continue
        param.data = param.data.to(dtype)
        cast += 1
    return cast
