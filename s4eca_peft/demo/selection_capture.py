"""Record the language-guided scale weights and spatial gates of one prediction with forward hooks.

The hooks sit on the tuner's selection modules (`LanguageGuidedScaleSelection`, `LanguageGuidedSpatialSelection`)
and read their second output: scale weights `(batch, n_branches, r)` and the spatial gate `(batch, H, W, 1)`. They
are registered only inside a `with SelectionCapture(model):` block, so a model outside it runs untouched. A model
serving several threads needs one capture at a time (the demo holds a lock around it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..tuner.scale_selection import LanguageGuidedScaleSelection
from ..tuner.spatial_selection import LanguageGuidedSpatialSelection

SELECTIONS = {"scale_weights": LanguageGuidedScaleSelection, "spatial_gate": LanguageGuidedSpatialSelection}


def _block_name(module_name: str) -> str:
    """``base_model.model.<block>.<adapter layer>.<adapter>.<selection>`` -> ``<block>``."""
    parts = module_name.split(".")[:-3]
    if parts[:2] == ["base_model", "model"]:
        parts = parts[2:]
    return ".".join(parts)


def short_block_names(names: list[str]) -> dict[str, str]:
    """Block names without the dotted prefix they all share, keeping its last part for context
    (``vision_model.backbone.swin.encoder.layers.0.blocks.1`` -> ``layers.0.blocks.1``)."""
    split = [name.split(".") for name in names]
    common = 0
    while split and all(len(parts) > common + 1 and parts[common] == split[0][common] for parts in split):
        common += 1
    keep = max(common - 1, 0)
    return {name: ".".join(parts[keep:]) for name, parts in zip(names, split)}


class SelectionCapture:
    """Forward hooks that record the selection maps of every adapted vision block while the block is entered.

    Args:
        model (`torch.nn.Module`): the adapted model (e.g. `S4ECASegmenter.model`).

    After the block, `maps` holds, per block name (in forward order), ``{"scale_weights": [(n_branches, r), ...],
    "spatial_gate": [(H, W), ...]}``: one float32 array per sample of every forward pass (sliding windows give
    several). A selection switched off in the adapter's config has no module and no entry.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = [
            (_block_name(name), kind, module)
            for name, module in model.named_modules()
            for kind, cls in SELECTIONS.items()
            if isinstance(module, cls)
        ]
        self.maps: dict[str, dict[str, list[np.ndarray]]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> SelectionCapture:
        self.maps = {}
        for block, kind, module in self.modules:
            self._handles.append(module.register_forward_hook(self._recorder(block, kind)))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, block: str, kind: str) -> Any:
        def record(module: nn.Module, args: tuple, output: tuple) -> None:
            values = output[1].detach().float().cpu().numpy()
            if kind == "spatial_gate":
                values = values[..., 0]  # (batch, H, W, 1) -> (batch, H, W)
            self.maps.setdefault(block, {}).setdefault(kind, []).extend(values)

        return record
