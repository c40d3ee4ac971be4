"""Proxy routing: how the text adapters hand language proxies to the vision adapters (docs/peft.md).

Backbone forwards have fixed signatures, so the proxies travel in an [`S4ECARouting`] shared by a model's S4ECA
layers: a [`ForwardScope`] opens a per-thread [`CallState`] at the outermost call and closes it after, and a
[`CheckpointReplay`] hands a checkpointed layer's replay in backward the state of the forward it replays.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch
from torch import nn

TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")
"""Arguments of a model call that a text encoder needs to compute proxies on demand."""


@dataclass(slots=True, eq=False)  # compared and hashed by identity, as the forward it belongs to
class CallState:
    """What one forward of the adapted model has gathered for the vision adapters (dicts are keyed by adapter name)."""

    explicit: dict[str, torch.Tensor] = field(default_factory=dict)  # set by `set_language_proxies`: read first
    proxies: dict[str, torch.Tensor] = field(default_factory=dict)  # (batch, num_queries, text_dim) from text adapters
    text_attention_mask: torch.Tensor | None = None  # (batch, length), recorded on the text encoder
    pixel_shape: tuple[int, int] | None = None  # image size, recorded on a ViT-family vision backbone
    text_inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # the outermost call's text arguments
    computing_text: bool = False  # True while the text encoders run on demand for this forward


class _ThreadState(threading.local):
    """Per-thread routing state: the open forward, proxies set for the next one, and selection-map recording."""

    def __init__(self) -> None:
        self.call: CallState | None = None
        self.openers: list[nn.Module] = []
        self.pending: dict[str, torch.Tensor] = {}
        self.last_proxies: dict[str, torch.Tensor] = {}
        self.recording: set[str] = set()
        self.selection_maps: dict[str, dict[str, dict[str, torch.Tensor]]] = {}


class S4ECARouting:
    """Proxy routing shared by all S4ECA layers of one model: `text_encoders` hold text adapters (run on demand for
    vision-first models), `checkpointed` layers contain adapted blocks. Copies share nothing per-thread."""

    def __init__(self) -> None:
        self.text_encoders: list[nn.Module] = []
        self.checkpointed: list[nn.Module] = []
        self._local = _ThreadState()

    def __getstate__(self) -> dict[str, Any]:
        return {"text_encoders": self.text_encoders, "checkpointed": self.checkpointed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _local=_ThreadState())

    # ------------------------------------------------------------------ one forward

    def open(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Enter `module`'s forward; the outermost entry of a thread starts a new [`CallState`]."""
        local = self._local
        local.openers.append(module)
        if len(local.openers) > 1:
            return
        call = local.call = CallState(local.pending)
        local.pending = {}
        if self.checkpointed and torch.is_grad_enabled():
            self._wrap_checkpoints()
        arguments = _arguments(module, args, kwargs)
        call.text_inputs = {
            name: arguments[name] for name in TEXT_INPUT_NAMES if isinstance(arguments.get(name), torch.Tensor)
        }
        for name in local.recording:
            local.selection_maps[name] = {}

    def close(self, module: nn.Module) -> None:
        """Leave `module`'s forward; the outermost exit discards the forward's state."""
        local = self._local
        if not local.openers or local.openers[-1] is not module:
            return  # the forward failed before `open` ran
        local.openers.pop()
        if not local.openers and local.call is not None:
            local.last_proxies = {name: value.detach() for name, value in local.call.proxies.items()}
            local.call = None

    def current(self) -> CallState:
        """The state of the forward in progress; a block called on its own gets a fresh one (with any proxies set
        for it)."""
        local = self._local
        if local.call is not None:
            return local.call
        call = CallState(local.pending)
        local.pending = {}
        return call

    def set_proxies(self, adapter_name: str, proxies: torch.Tensor) -> None:
        """Proxies for the forward in progress, or else for the next forward of this thread."""
        local = self._local
        if local.call is not None:
            local.call.explicit[adapter_name] = proxies
        else:
            local.pending[adapter_name] = proxies

    def last_proxies(self, adapter_name: str) -> torch.Tensor | None:
        """Proxies the text adapter wrote in this thread's forward in progress, else in its last one (detached)."""
        local = self._local
        if local.call is not None and adapter_name in local.call.proxies:
            return local.call.proxies[adapter_name]
        return local.last_proxies.get(adapter_name)

    def compute_text_proxies(self, call: CallState) -> bool:
        """Run the text encoders on the call's own text inputs (for models that run vision first); `True` if ran."""
        if call.computing_text or not self.text_encoders or not (
            "input_ids" in call.text_inputs or "inputs_embeds" in call.text_inputs
        ):
            return False
        call.computing_text = True
        try:
            for encoder in self.text_encoders:
                accepted = _signature(encoder).parameters
                encoder(**{name: value for name, value in call.text_inputs.items() if name in accepted})
        finally:
            call.computing_text = False
        return True

    def _wrap_checkpoints(self) -> None:
        """Wrap the checkpoint function of every checkpointed layer that contains adapted blocks (set by transformers'
        `gradient_checkpointing_enable`, before or after injection) in a [`CheckpointReplay`]."""
        for module in self.checkpointed:
            function = module.__dict__.get("_gradient_checkpointing_func")
            if function is not None and not isinstance(function, CheckpointReplay):
                module._gradient_checkpointing_func = CheckpointReplay(function, self)

    def unwrap_checkpoints(self) -> None:
        for module in self.checkpointed:
            function = module.__dict__.get("_gradient_checkpointing_func")
            if isinstance(function, CheckpointReplay):
                module._gradient_checkpointing_func = function.checkpoint

    def forget(self, adapter_name: str) -> None:
        """Drop what this thread holds for a deleted adapter."""
        local = self._local
        for store in (local.pending, local.last_proxies, local.selection_maps):
            store.pop(adapter_name, None)
        local.recording.discard(adapter_name)

    # ------------------------------------------------------------------ selection maps

    def set_recording(self, adapter_name: str, enabled: bool) -> None:
        local = self._local
        if enabled:
            local.recording.add(adapter_name)
            local.selection_maps.setdefault(adapter_name, {})
        else:
            local.recording.discard(adapter_name)
            local.selection_maps.pop(adapter_name, None)

    def record(self, adapter_name: str, layer_name: str, maps: dict[str, torch.Tensor]) -> None:
        local = self._local
        if adapter_name in local.recording:
            local.selection_maps.setdefault(adapter_name, {})[layer_name] = {k: v.detach() for k, v in maps.items()}

    def selection_maps(self, adapter_name: str) -> dict[str, dict[str, torch.Tensor]]:
        return dict(self._local.selection_maps.get(adapter_name, {}))


_SIGNATURES: dict[type, inspect.Signature] = {}


def _signature(module: nn.Module) -> inspect.Signature:
    if type(module) not in _SIGNATURES:
        _SIGNATURES[type(module)] = inspect.signature(module.forward)
    return _SIGNATURES[type(module)]


def _arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments `module.forward` receives, by parameter name (positional ones bound to their names)."""
    if not args:
        return kwargs
    try:
        bound = _signature(module).bind_partial(*args)
    except TypeError:
        return kwargs
    return {**bound.arguments, **kwargs}


def refuse_replica() -> None:
    raise RuntimeError(
        "S4ECA adapters cannot run inside torch.nn.DataParallel: its replicas share the forward hooks of the "
        "original blocks, so every replica would run the adapters of the first device. Use distributed data "
        "parallel instead, one process per device: `accelerate launch --multi_gpu --num_processes N train.py` "
        "(the training loop prepares the model with Accelerate)."
    )


class CheckpointReplay:
    """A layer's checkpoint function whose recompute sees the [`CallState`] of the forward it replays. The proxies
    go through the checkpoint as inputs: reentrant checkpointing hands gradients back to its inputs only."""

    def __init__(self, checkpoint: Any, routing: S4ECARouting) -> None:
        self.checkpoint = checkpoint
        self.routing = routing

    def __call__(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        call = self.routing._local.call
        if call is None:
            return self.checkpoint(function, *args, **kwargs)
        keys = [("explicit", name) for name in call.explicit] + [("proxies", name) for name in call.proxies]
        tensors = [getattr(call, store)[name] for store, name in keys]
        return self.checkpoint(partial(self._run, call, keys, function), *args, *tensors, **kwargs)

    def _run(self, call: CallState, keys: list[tuple[str, str]], function: Any, *args: Any, **kwargs: Any) -> Any:
        count = len(args) - len(keys)
        if self.routing._local.call is call:  # the forward itself: what it writes stays in its state
            return function(*args[:count], **kwargs)
        replayed = replace(call, explicit=dict(call.explicit), proxies=dict(call.proxies))
        for (store, name), tensor in zip(keys, args[count:]):
            getattr(replayed, store)[name] = tensor
        local = self.routing._local
        saved = local.call, local.openers
        local.call, local.openers = replayed, [replayed]  # a marker no module matches: nested forwards leave it open
        try:
            return function(*args[:count], **kwargs)
        finally:
            local.call, local.openers = saved


class ForwardScope:
    """Forward pre-hook (and, through `close`, forward hook) that opens and closes a forward's [`CallState`]; it
    records the 2-D `attention_mask` on a text encoder (`records_text`), the image size on a ViT (`records_pixels`)."""

    def __init__(self, routing: S4ECARouting) -> None:
        self.routing = routing
        self.records_text = False
        self.records_pixels = False

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if getattr(module, "_is_replica", False):
            refuse_replica()
        routing = self.routing
        routing.open(module, args, kwargs)
        if not (self.records_text or self.records_pixels):
            return
        call, arguments = routing._local.call, _arguments(module, args, kwargs)
        if self.records_text:
            mask = arguments.get("attention_mask")
            call.text_attention_mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
        if self.records_pixels:
            pixel_values = arguments.get("pixel_values")
            is_image = isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4
            call.pixel_shape = tuple(pixel_values.shape[-2:]) if is_image else None

    def close(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.routing.close(module)


def forward_scope(module: nn.Module, routing: S4ECARouting) -> ForwardScope:
    """The [`ForwardScope`] of `module`, added (before any other pre-hook) when it has none."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, ForwardScope):
            return hook
    scope = ForwardScope(routing)
    module.register_forward_pre_hook(scope, with_kwargs=True, prepend=True)
    module.register_forward_hook(scope.close, with_kwargs=True, always_call=True)
    return scope


def remove_hooks(module: nn.Module, owner: object) -> None:
    """Remove the forward hooks and pre-hooks of `module` that are `owner` or its methods (done by `unload()`)."""
    extras = (module._forward_pre_hooks_with_kwargs, module._forward_hooks_with_kwargs,
              module._forward_hooks_always_called)
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key, hook in list(hooks.items()):
            if getattr(hook, "__self__", hook) is owner:
                del hooks[key]
                for extra in extras:
                    extra.pop(key, None)


def remove_forward_scope(module: nn.Module) -> None:
    """Remove the [`ForwardScope`] hooks of `module`, if any."""
    for hook in list(module._forward_pre_hooks.values()):
        if isinstance(hook, ForwardScope):
            remove_hooks(module, hook)
