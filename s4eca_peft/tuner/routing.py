"""Proxy routing: how the text adapters hand language proxies to the vision adapters.

Backbone forwards have fixed signatures, so nothing can be passed from the text encoder to the vision backbone as an
argument. Instead the tuner keeps one small per-adapter [`LanguageProxyContext`] (plain Python objects, not modules:
they hold no parameters and are never saved) inside an [`S4ECARouting`] that all S4ECA layers reference. The text
adapter writes `(batch, num_queries, text_dim)` proxies into its context; every vision adapter of the same adapter
reads them. Proxies stay until the next text forward, because gradient checkpointing recomputes vision blocks during
backward and needs them again.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


class LanguageProxyContext:
    """Per-adapter mailbox between the text adapter and the vision adapters.

    Attributes:
        proxies (`torch.Tensor` of shape `(batch, num_queries, text_dim)`, *optional*):
            The latest language proxies, written by the text adapter or by `S4ECAModel.set_language_proxies`.
        record_selection_maps (`bool`):
            When `True`, each vision adapter stores its last scale weights and spatial gate in `selection_maps`.
        selection_maps (`dict[str, dict[str, torch.Tensor]]`):
            Layer name -> `{"scale_weights": (batch, n_branches, r), "spatial_gate": (batch, 1, H, W)}` (detached).
    """

    def __init__(self) -> None:
        self.proxies: torch.Tensor | None = None
        self.record_selection_maps = False
        self.selection_maps: dict[str, dict[str, torch.Tensor]] = {}


class S4ECARouting:
    """State shared by all S4ECA layers of one model: the per-adapter contexts and the current text/image inputs.

    `text_attention_mask` (`(batch, length)`, 1 = word, 0 = padding) and `pixel_shape` (`(height, width)`) are
    recorded by forward pre-hooks on the enclosing text and vision `PreTrainedModel`s, when there are any.
    """

    def __init__(self) -> None:
        self.contexts: dict[str, LanguageProxyContext] = {}
        self.text_attention_mask: torch.Tensor | None = None
        self.pixel_shape: tuple[int, int] | None = None

    def context(self, adapter_name: str) -> LanguageProxyContext:
        if adapter_name not in self.contexts:
            self.contexts[adapter_name] = LanguageProxyContext()
        return self.contexts[adapter_name]


_SIGNATURES: dict[type, inspect.Signature] = {}


def _argument(module: nn.Module, args: tuple, kwargs: dict, name: str) -> Any:
    """The value `module.forward` receives for parameter `name`, or `None`."""
    if name in kwargs:
        return kwargs[name]
    signature = _SIGNATURES.get(type(module))
    if signature is None:
        signature = _SIGNATURES[type(module)] = inspect.signature(module.forward)
    try:
        bound = signature.bind_partial(*args)
    except TypeError:
        return None
    return bound.arguments.get(name)


class AttentionMaskRecorder:
    """Forward pre-hook on a text `PreTrainedModel`: records its 2-D `attention_mask` (or `None`) for the text adapter."""

    def __init__(self, routing: S4ECARouting) -> None:
        self.routing = routing

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = _argument(module, args, kwargs, "attention_mask")
        self.routing.text_attention_mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None


class PixelShapeRecorder:
    """Forward pre-hook on a ViT-family `PreTrainedModel`: records the image size, from which the patch grid follows."""

    def __init__(self, routing: S4ECARouting) -> None:
        self.routing = routing

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        pixel_values = _argument(module, args, kwargs, "pixel_values")
        is_image = isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4
        self.routing.pixel_shape = tuple(pixel_values.shape[-2:]) if is_image else None


def remove_hooks(module: nn.Module, hook_type: type) -> None:
    """Remove the forward pre-hooks of `module` that are instances of `hook_type` (safe after `copy.deepcopy`)."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, hook_type):
            del module._forward_pre_hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)


def has_hook(module: nn.Module, hook_type: type) -> bool:
    return any(isinstance(hook, hook_type) for hook in module._forward_pre_hooks.values())
