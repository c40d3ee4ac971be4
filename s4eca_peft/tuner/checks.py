"""Checks of an adapter's own files (docs/security.md): a valid config, finite weights, and weights whose sizes are
those the config describes. A defect of the adapter itself is an `AdapterFileError` naming the file; a mismatch with
the base model is reported by the load (`S4ECAModel`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from peft.utils import CONFIG_NAME
from peft.utils import SAFETENSORS_WEIGHTS_NAME as WEIGHTS_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import S4ECAConfig
from .errors import AdapterFileError

_CONTAINERS = ("s4eca_text_adapter", "s4eca_vision_adapter")


def _adapter_key(key: str, adapter_name: str | None) -> tuple[str, str, str] | None:
    """``(container, block, rest)`` of an S4ECA tensor key (the adapter name after the container dropped), or None."""
    for container in _CONTAINERS:
        marker = f".{container}."
        if marker in f".{key}":
            block, rest = f".{key}".split(marker, 1)
            if adapter_name is not None and rest.startswith(f"{adapter_name}."):
                rest = rest[len(adapter_name) + 1 :]
            return container, block.lstrip("."), rest
    return None


def _implied_values(state_dict: Mapping[str, torch.Tensor], adapter_name: str | None) -> dict[str, dict[Any, str]]:
    """Config field -> {value the weights imply: an example key}, from tensor shapes and names."""
    implied: dict[str, dict[Any, str]] = {}
    branches: dict[str, dict[int, int]] = {}
    vision_blocks: dict[str, set[str]] = {}

    def note(field: str, value: Any, key: str) -> None:
        implied.setdefault(field, {}).setdefault(value, key)

    sized = {("s4eca_text_adapter", "queries"): "num_queries", ("s4eca_text_adapter", "q_proj.weight"):
             "text_bottleneck_size", ("s4eca_vision_adapter", "down.weight"): "vision_bottleneck_size"}
    for key, tensor in state_dict.items():
        parsed = _adapter_key(key, adapter_name)
        if parsed is None:
            continue
        container, block, rest = parsed
        shape = tuple(tensor.shape)
        if (container, rest) in sized and len(shape) == 2:
            note(sized[container, rest], shape[0], key)
        if container == "s4eca_text_adapter":
            continue
        vision_blocks.setdefault(block, set()).add(rest.split(".", 1)[0])
        parts = rest.split(".")
        if parts[:2] == ["extractor", "branches"] and len(parts) == 4 and parts[2].isdigit() and parts[3] == "weight":
            branches.setdefault(block, {})[int(parts[2])] = shape[-1] if len(shape) == 4 else -1
    for block, kernels in branches.items():
        example = f"{block}.s4eca_vision_adapter.extractor.branches.*.weight"
        note("extractor_kernel_sizes", tuple(kernels[i] for i in sorted(kernels)), example)
    for block, modules in vision_blocks.items():
        if not {"down", "extractor", "up"} <= modules:
            continue  # not a whole vision adapter: the key check of the load reports it
        for field in ("scale_selection", "spatial_selection", "proxy_attention"):
            note(field, field in modules, f"{block}.s4eca_vision_adapter.{field}")
    return implied


def config_weight_disagreements(config: Any, state_dict: Mapping[str, torch.Tensor],
                                adapter_name: str | None = None) -> list[str]:
    """Where the sizes implied by the weights differ from ``config`` (an `S4ECAConfig`), one line per field."""
    lines = []
    for field, values in _implied_values(state_dict, adapter_name).items():
        expected = getattr(config, field)
        expected = tuple(expected) if isinstance(expected, list) else expected
        wrong = [(value, key) for value, key in values.items() if value != expected]
        if wrong:
            shown, found = (list(v) if isinstance(v, tuple) else v for v in (expected, wrong[0][0]))
            lines.append(f"{field}: {CONFIG_NAME} says {shown!r}, the weights hold {found!r} (e.g. {wrong[0][1]})")
    return lines


def check_adapter_tensors(config: Any, state_dict: Mapping[str, torch.Tensor], source: str,
                          adapter_name: str | None = None) -> None:
    """Refuse non-finite tensors and weights whose sizes contradict ``config``, naming ``source`` and the tensors."""
    non_finite = [key for key, value in state_dict.items() if value.is_floating_point() and not value.isfinite().all()]
    if non_finite:
        raise AdapterFileError(f"{source}: {len(non_finite)} of {len(state_dict)} adapter tensors hold NaN or "
                               f"infinite values (e.g. {non_finite[:3]}); such an adapter predicts nothing useful (a "
                               "diverged training run or a damaged file) and is refused.")
    disagreements = config_weight_disagreements(config, state_dict, adapter_name)
    if disagreements:
        raise AdapterFileError(f"{source}: {CONFIG_NAME} does not describe these weights (it was edited, or belongs "
                               "to other weights):\n  " + "\n  ".join(disagreements)
                               + f"\nRestore the {CONFIG_NAME} saved with the weights.")


def check_adapter_folder(folder: str | os.PathLike) -> Any:
    """Checks a local adapter folder before anything is built (`AdapterFileError` naming the file, or
    FileNotFoundError for a missing one); returns its `S4ECAConfig`."""
    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"No {name} in {str(folder)!r}: not a complete S4ECA adapter folder.")
    config = S4ECAConfig.from_pretrained(str(folder))
    weights = folder / WEIGHTS_NAME
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise AdapterFileError(f"{weights}: not a readable safetensors file ({error}).") from error
    check_adapter_tensors(config, state_dict, str(weights))
    return config
