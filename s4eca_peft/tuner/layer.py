"""S4ECA tuner layers: whole text and vision blocks wrapped with their adapters, one per adapter name.

The adaptation runs in a forward hook on the wrapped block, registered first: transformers collects
`output_hidden_states` with hooks on the block classes themselves, so those hooks see the adapted features too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from torch.nn import functional as F

from .config import S4ECAConfig
from .routing import CallState, S4ECARouting, refuse_replica
from .text_adapter import TextProxyAdapter
from .vision_adapter import S4ECAVisionAdapter

_WIDTH_ATTRIBUTES = ("out_features", "out_channels", "num_features", "normalized_shape")
MERGE_REFUSAL = (
    "S4ECA adapters cannot be merged into the base weights: they are non-linear (dilated convolutions, a softmax "
    "scale selection and a sigmoid spatial gate) and depend on each input's language proxies. Keep the PeftModel for "
    "inference, or call `unload()` to get the unadapted base model back."
)


def block_hidden_size(block: nn.Module) -> int:
    """Channel width of a block's output: that of its last submodule exposing one (a Linear, conv, or norm)."""
    width = None
    for module in block.modules():
        for attribute in _WIDTH_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, (tuple, list, torch.Size)) and len(value) == 1:
                value = value[0]
            if isinstance(value, int) and not isinstance(value, bool):
                width = value
                break
    if width is None:
        raise ValueError(f"Cannot infer the output width of {type(block).__name__}: it has no Linear, conv or norm.")
    return width


class S4ECALayer(nn.Module, BaseTunerLayer):
    """Base class of the S4ECA tuner layers (see the module docstring)."""

    role: str = ""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: S4ECAConfig, routing: S4ECARouting,
                 module_name: str, **layer_kwargs: Any) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.routing = routing
        self.module_name = module_name
        self.in_features = self.out_features = block_hidden_size(base_layer)
        self._disable_adapters = False
        self.merged_adapters = []
        setattr(self, self.adapter_layer_names[0], nn.ModuleDict({}))
        self._active_adapter = adapter_name
        base_layer.register_forward_hook(self._adapt, with_kwargs=True, prepend=True)
        self.update_layer(adapter_name, config, **layer_kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_layer(*args, **kwargs)

    def _adapt(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        """Forward hook on the wrapped block: the block's output, adapted for the active adapters."""
        if module is not self.base_layer:
            refuse_replica()  # a copy of the block (DataParallel replica) calling this layer's hook
        here = getattr(self, self.adapter_layer_names[0])
        adapters = [] if self.disable_adapters else [name for name in self.active_adapters if name in here]
        if not adapters:
            return None
        hidden = output[0] if isinstance(output, tuple) and output else output
        if not isinstance(hidden, torch.Tensor):
            raise TypeError(
                f"S4ECA {self.role} adapter at {self.module_name!r} cannot read the output of "
                f"{type(module).__name__} ({type(output).__name__}): it adapts blocks that return their hidden states "
                "as a tensor or as the first item of a tuple. Target the blocks inside it instead."
            )
        adapted = self._adapt_hidden(hidden, adapters, args, kwargs, self.routing.current())
        if adapted is None:
            return None
        return (adapted, *output[1:]) if isinstance(output, tuple) else adapted

    def _adapt_hidden(self, hidden: torch.Tensor, adapters: list[str], args: tuple, kwargs: dict,
                      call: CallState) -> torch.Tensor | None:
        raise NotImplementedError

    def _get_base_layer_device_and_dtype(self, base_layer: nn.Module) -> tuple[torch.device | None, Any]:
        # whole blocks have no `.weight`: follow their first floating-point parameter
        for param in base_layer.parameters():
            if param.is_floating_point():
                return param.device, param.dtype
        return None, None

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(MERGE_REFUSAL)

    def unmerge(self) -> None:
        """Nothing is ever merged."""

    def __getattr__(self, name: str) -> Any:
        # backbone code reads attributes off its blocks; forward the ones the wrapper does not have
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def __repr__(self) -> str:
        return "s4eca." + super().__repr__()


class S4ECATextLayer(S4ECALayer):
    """A text block with text adapters that write language proxies and, with feedback, update its word features."""

    role = "text"
    adapter_layer_names = ("s4eca_text_adapter",)
    other_param_names = ("s4eca_text_index",)

    def __init__(self, *args: Any, text_index: int = 0) -> None:
        """`S4ECALayer`'s arguments; `text_index` counts the text layers of the adapter before this one."""
        self.s4eca_text_index: dict[str, int] = {}
        super().__init__(*args, text_index=text_index)

    def update_layer(self, adapter_name: str, config: S4ECAConfig, text_index: int = 0, **kwargs: Any) -> None:
        self.s4eca_text_adapter[adapter_name] = TextProxyAdapter(
            self.in_features, config.num_queries, config.text_bottleneck_size, config.text_num_heads,
            feedback=config.text_feedback, init_weights=config.init_weights,
        )
        self.s4eca_text_index[adapter_name] = text_index
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _key_padding_mask(self, words: torch.Tensor, args: tuple, kwargs: dict,
                          call: CallState) -> torch.Tensor | None:
        """`(batch, length)` booleans, `True` for real words (`None`: all are), from the 2-D mask recorded on the text
        model, else the last query row of the block's 4-D mask (it sees every real key, also under a causal mask)."""
        batch, length = words.shape[:2]
        recorded = call.text_attention_mask
        if recorded is not None and tuple(recorded.shape) == (batch, length):
            return recorded.to(words.device).bool()
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if isinstance(mask, torch.Tensor) and mask.ndim == 4 and mask.shape[0] == batch and mask.shape[-1] == length:
            row = mask[:, 0, -1, :]
            return row if row.dtype == torch.bool else row > -1.0  # additive masks: 0 keeps, a large negative drops
        return None

    def _adapt_hidden(self, words: torch.Tensor, adapters: list[str], args: tuple, kwargs: dict,
                      call: CallState) -> torch.Tensor | None:
        if words.ndim != 3:
            raise ValueError(
                f"S4ECA text adapter at {self.module_name!r} got an output of shape {tuple(words.shape)}; expected "
                "word features (batch, length, text_dim)."
            )
        padding = self._key_padding_mask(words, args, kwargs, call)
        adapted = words  # every adapter reads the block's own words; their feedback updates add up
        for name in adapters:
            adapter = self.s4eca_text_adapter[name]
            dtype = adapter.q_proj.weight.dtype
            # a later text adapter refines the proxies of the earlier ones, in this forward only
            previous = call.proxies.get(name) if self.s4eca_text_index[name] > 0 else None
            previous = previous.to(dtype) if previous is not None else None
            # proxies (batch, num_queries, text_dim); update (batch, 1, text_dim), None without feedback
            call.proxies[name], update = adapter(words.to(dtype), padding, previous)
            if update is not None:
                adapted = adapted + update.to(words.dtype)  # zero at initialisation
        if adapted is words:
            return None  # no feedback: the text features themselves are left unchanged
        return adapted


class S4ECAVisionLayer(S4ECALayer):
    """A vision block whose output, `(batch, C, H, W)` maps or `(batch, tokens, C)` sequences, gets the S4ECA vision
    adapter's residual update. The token grid comes from the block's `input_dimensions` (Swin), else from the image
    size and `patch_size` of the enclosing ViT, else is the largest square; tokens before the grid (CLS, registers)
    are left unchanged.
    """

    role = "vision"
    adapter_layer_names = ("s4eca_vision_adapter",)

    def __init__(self, *args: Any, patch_size: int | None = None) -> None:
        """`S4ECALayer`'s arguments; `patch_size` of the enclosing ViT-family backbone, if any."""
        self.patch_size = patch_size
        super().__init__(*args)

    def update_layer(self, adapter_name: str, config: S4ECAConfig, **kwargs: Any) -> None:
        text_dim = config.text_hidden_size or 0  # 0: no selection reads proxies (checked by the tuner otherwise)
        self.s4eca_vision_adapter[adapter_name] = S4ECAVisionAdapter(
            self.in_features, text_dim, config.vision_bottleneck_size, config.extractor_kernel_sizes,
            config.extractor_dilations, scale_selection=config.scale_selection,
            spatial_selection=config.spatial_selection, proxy_attention=config.proxy_attention,
            init_weights=config.init_weights,
        )
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _grid(self, tokens: torch.Tensor, args: tuple, kwargs: dict, call: CallState) -> tuple[int, int, int]:
        """`(prefix, h, w)` of a `(batch, N, C)` token sequence."""
        num_tokens = tokens.shape[1]
        dims = kwargs.get("input_dimensions", args[1] if len(args) > 1 else None)
        if isinstance(dims, (tuple, list)) and len(dims) == 2 and all(isinstance(d, int) for d in dims):
            if dims[0] * dims[1] == num_tokens:
                return 0, int(dims[0]), int(dims[1])
        if self.patch_size and call.pixel_shape is not None:
            height, width = (side // self.patch_size for side in call.pixel_shape)
            if 0 < height * width <= num_tokens:
                return num_tokens - height * width, height, width
        side = math.isqrt(num_tokens)
        return num_tokens - side * side, side, side

    def _as_map(self, hidden: torch.Tensor, args: tuple, kwargs: dict,
                call: CallState) -> tuple[torch.Tensor, Callable]:
        """The block output as a channels-last `(batch, H, W, C)` map (a view where possible), and the function that
        brings an update of that shape back to the output's layout."""
        if hidden.ndim == 4:  # (batch, C, H, W) maps
            return hidden.permute(0, 2, 3, 1), lambda update: update.permute(0, 3, 1, 2)
        if hidden.ndim != 3:
            raise ValueError(
                f"S4ECA vision adapter at {self.module_name!r} got an output of shape {tuple(hidden.shape)}; expected "
                "(batch, C, H, W) maps or (batch, tokens, C) sequences."
            )
        prefix, height, width = self._grid(hidden, args, kwargs, call)
        batch, _, channels = hidden.shape
        grid = hidden[:, prefix:].reshape(batch, height, width, channels)
        if prefix == 0:
            return grid, lambda update: update.reshape(batch, height * width, channels)
        # prefix tokens (CLS, registers) get no update: pad the token update with zeros in front
        return grid, lambda update: F.pad(update.reshape(batch, height * width, channels), (0, 0, prefix, 0))

    def _proxies(self, name: str, adapter: S4ECAVisionAdapter, batch: int, call: CallState) -> torch.Tensor | None:
        """The proxies `(batch, num_queries, text_dim)` of this forward for adapter `name`."""
        if adapter.proxy_proj is None:
            return None
        explicit = call.explicit.get(name)
        proxies = explicit if explicit is not None else call.proxies.get(name)
        if proxies is None and self.routing.compute_text_proxies(call):  # vision-first models (CLIP, SigLIP)
            proxies = call.proxies.get(name)
        if proxies is None:
            raise RuntimeError(
                f"S4ECA vision adapter {name!r} at {self.module_name!r} found no language proxies for this forward. "
                "Proxies belong to one forward and are never reused from an earlier call. Run the text encoder first "
                "in the same forward (call the whole model with both the images and the expressions, e.g. "
                "`model(pixel_values=..., input_ids=..., attention_mask=...)`), or, for a vision-only call, set them "
                "right before it with `model.set_language_proxies(proxies)`, shape (batch, num_queries, text_dim)."
            )
        if proxies.shape[-1] != adapter.text_dim or proxies.ndim != 3:
            raise ValueError(
                f"Language proxies of shape {tuple(proxies.shape)} do not fit adapter {name!r}, which expects "
                f"(batch, num_queries, {adapter.text_dim})."
            )
        if proxies.shape[0] != batch:
            if proxies.shape[0] != 1 or explicit is None:
                raise RuntimeError(
                    f"The language proxies were computed for a batch of {proxies.shape[0]} expressions but the vision "
                    f"backbone got a batch of {batch} images. S4ECA conditions each image on its own expression: pass "
                    "one expression per image (repeat an expression to use it for several images), or set proxies "
                    "of batch 1 with `model.set_language_proxies(proxies)`, which apply to every image of the call."
                )
            proxies = proxies.expand(batch, -1, -1)  # explicit proxies of one expression, for every image
        return proxies

    def _adapt_hidden(self, hidden: torch.Tensor, adapters: list[str], args: tuple, kwargs: dict,
                      call: CallState) -> torch.Tensor:
        features, to_output = self._as_map(hidden, args, kwargs, call)
        update = None
        for name in adapters:
            adapter = self.s4eca_vision_adapter[name]
            dtype = adapter.down.weight.dtype
            proxies = self._proxies(name, adapter, features.shape[0], call)
            delta, maps = adapter(features.to(dtype), proxies.to(dtype) if proxies is not None else None)
            self.routing.record(name, self.module_name, maps)
            update = delta if update is None else update + delta
        return hidden + to_output(update).to(hidden.dtype)
