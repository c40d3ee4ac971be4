"""S4ECAModel: injects S4ECA text and vision adapters into a model and routes the language proxies."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft.tuners.tuners_utils import (
    BaseTuner,
    _filter_state_dict_by_key_prefixes,
    _get_tuner_state_dict_key_prefixes,
)
from torch import nn

from .checks import WEIGHTS_NAME, check_adapter_tensors
from .config import S4ECAConfig
from .errors import AdapterBackboneMismatchError
from .layer import MERGE_REFUSAL, S4ECALayer, S4ECATextLayer, S4ECAVisionLayer, block_hidden_size
from .routing import S4ECARouting, forward_scope, remove_forward_scope, remove_hooks
from .targets import (
    TEXT_BLOCK_CLASSES,
    VISION_BLOCK_CLASSES,
    candidate_blocks,
    check_default_targets_unchanged,
    check_readable_outputs,
    check_targets,
    default_targets,
    enclosing_pretrained_models,
    head_like_modules,
    matches,
    owner_of,
    unadapted_encoders,
)

DEFAULT_HEAD_NAME = "segmentation_head"
"""Full dotted name of the head of `ReferringSegmentationModel`, the default of `modules_to_save`."""


def _refuse_unadapted_encoders(model: nn.Module, targets: list[str]) -> None:
    """With default targets, refuse a model holding an encoder that S4ECA has no defaults for (it would run
    unadapted), naming its blocks."""
    encoders = unadapted_encoders(model, targets)
    if not encoders:
        return
    name, encoder = next(iter(encoders.items()))
    where = repr(name) if name else "the root"
    raise ValueError(
        f"S4ECA has no default targets for the `{encoder.config.model_type}` encoder {type(encoder).__name__} at "
        f"{where}, so it would run unadapted. Name its blocks in `vision_target_modules` (an image encoder) or "
        "`text_target_modules` (a text encoder), with full dotted names or a regex. Its "
        f"blocks:\n{candidate_blocks(encoder, prefix=name)}"
    )


class S4ECAModel(BaseTuner):
    """
    Creates S4ECA adapters (Semantic-driven Scale and Spatial Selection for Efficient Cross-modal Alignment, 2026) in
    a model with a text encoder and a vision backbone, e.g. `ReferringSegmentationModel`.

    The text adapter writes language proxies that the vision adapters read in the same forward, and only there (per
    thread; see `routing.py` and docs/peft.md). For a vision-only call, set them with
    [`~S4ECAModel.set_language_proxies`]. The adapters cannot be merged, nor run in `torch.nn.DataParallel`.

    Args:
        model ([`torch.nn.Module`]): The model to be adapted.
        config ([`S4ECAConfig`]): The configuration of the S4ECA adapters.
        adapter_name (`str`): The name of the adapter, defaults to `"default"`.
        low_cpu_mem_usage (`bool`, *optional*, defaults to `False`):
            Create empty adapter weights on the meta device (to be loaded afterwards).
    """

    prefix: str = "s4eca_"
    tuner_layer_cls = S4ECALayer
    # block classes adapted by default per `model_type` (S4ECA matches by class, see `targets.py`)
    target_module_mapping = {k: list(v) for k, v in {**TEXT_BLOCK_CLASSES, **VISION_BLOCK_CLASSES}.items()}

    @property
    def routing(self) -> S4ECARouting:
        """The proxy routing shared by all S4ECA layers of this model."""
        routing = self.__dict__.get("_s4eca_routing")
        if routing is None:
            routing = self.__dict__["_s4eca_routing"] = S4ECARouting()
        return routing

    def _prepare_adapter_config(self, peft_config: S4ECAConfig, model_config: dict) -> S4ECAConfig:
        return peft_config  # targets need the model itself: resolved in `_prepare_model`

    def _prepare_model(self, peft_config: S4ECAConfig, model: nn.Module) -> None:
        """Resolve default targets, the proxy width and the head; validate them against `model`."""
        specs = {"text": peft_config.text_target_modules, "vision": peft_config.vision_target_modules}
        defaults = dict(zip(specs, default_targets(model)))
        if not peft_config.uses_language:
            defaults["text"] = []  # with both selections off nothing reads proxies: no text adapter
        check_default_targets_unchanged(peft_config, defaults, specs)
        for role, default in defaults.items():
            if specs[role] is None and default:
                specs[role] = default
                peft_config.targets_from_defaults = sorted({*peft_config.targets_from_defaults, role})
        text_spec, vision_spec = specs["text"], specs["vision"]
        if text_spec is None and vision_spec is None:
            raise ValueError(
                f"Found no text encoder ({', '.join(TEXT_BLOCK_CLASSES)}) and no vision backbone "
                f"({', '.join(VISION_BLOCK_CLASSES)}) in {type(model).__name__} to adapt by default. Set "
                f"`text_target_modules` and `vision_target_modules` to blocks it has:\n{candidate_blocks(model)}"
            )
        text, vision = check_targets(model, text_spec, vision_spec)
        check_readable_outputs(model, text + vision)
        if peft_config.text_target_modules is None or peft_config.vision_target_modules is None:
            _refuse_unadapted_encoders(model, text + vision)
        peft_config.text_target_modules, peft_config.vision_target_modules = text_spec, vision_spec

        widths = sorted({block_hidden_size(model.get_submodule(name)) for name in text})
        if len(widths) > 1:
            raise ValueError(f"The text target modules have different widths {widths}; target one text encoder.")
        if widths and peft_config.text_hidden_size not in (None, widths[0]):
            raise AdapterBackboneMismatchError(
                f"This adapter was made for text features of width {peft_config.text_hidden_size}, but the text "
                f"encoder of this model has width {widths[0]} (shapes (batch, length, {peft_config.text_hidden_size}) "
                f"vs (batch, length, {widths[0]})); load it into a base model with the same text encoder."
            )
        if widths:
            peft_config.text_hidden_size = widths[0]
        elif vision_spec is not None and peft_config.uses_language and peft_config.text_hidden_size is None:
            raise ValueError(
                "The model has no text blocks to adapt, so the width of the language proxies is unknown: set "
                "`text_hidden_size` in S4ECAConfig and provide proxies with `model.set_language_proxies(...)`."
            )
        if peft_config.modules_to_save is None:
            has_head = DEFAULT_HEAD_NAME in dict(model.named_modules())
            peft_config.modules_to_save = [DEFAULT_HEAD_NAME] if has_head else []
            frozen = head_like_modules(model, peft_config.modules_to_save, text + vision)
            if frozen:
                warnings.warn(
                    f"{frozen} look like a task head but will stay frozen: S4ECA trains its adapters and "
                    f"`modules_to_save` only, which defaults to {peft_config.modules_to_save}. To train them, pass "
                    "their full dotted names: "
                    f"S4ECAConfig(modules_to_save={[*peft_config.modules_to_save, *frozen]}); "
                    "to keep them frozen, pass the list you want (`modules_to_save=[]` for none).",
                    stacklevel=4,
                )
        forward_scope(model, self.routing)  # one forward of the model: its proxies are written and read within it

    def _check_target_module_exists(self, peft_config: S4ECAConfig, key: str) -> bool:
        return matches(peft_config.text_target_modules, key) or matches(peft_config.vision_target_modules, key)

    def _create_and_replace(self, peft_config: S4ECAConfig, adapter_name: str, target: nn.Module, target_name: str,
                            parent: nn.Module, current_key: str, **kwargs: Any) -> None:
        role = "text" if matches(peft_config.text_target_modules, current_key) else "vision"
        # a text layer refines the proxies of the adapter's text layers before it
        text_index = sum(isinstance(m, S4ECATextLayer) and adapter_name in m.s4eca_text_adapter
                         for m in self.model.modules()) if role == "text" else 0
        if isinstance(target, S4ECALayer):
            if target.role != role:
                raise ValueError(f"{current_key!r} is a {target.role} block of another adapter, not a {role} block.")
            target.update_layer(adapter_name, peft_config, text_index=text_index)
            return
        checkpointed = self.routing.checkpointed
        for depth in range(current_key.count(".") + 1):  # layers that checkpoint the block with its hook
            ancestor = self.model.get_submodule(".".join(current_key.split(".")[:depth]))
            if hasattr(ancestor, "gradient_checkpointing") and all(m is not ancestor for m in checkpointed):
                checkpointed.append(ancestor)
        _, owner = owner_of(current_key, enclosing_pretrained_models(self.model))
        # the encoder holding the block opens a forward of its own when called alone, and records its inputs
        scope = forward_scope(owner, self.routing) if owner is not None else None
        if role == "text":
            new_module = S4ECATextLayer(target, adapter_name, peft_config, self.routing, current_key,
                                        text_index=text_index)
            if scope is not None:
                scope.records_text = True
                if not any(encoder is owner for encoder in self.routing.text_encoders):
                    self.routing.text_encoders.append(owner)  # run on demand by vision-first models
        else:
            patch_size = getattr(getattr(owner, "config", None), "patch_size", None)
            patch_size = patch_size if isinstance(patch_size, int) else None
            new_module = S4ECAVisionLayer(target, adapter_name, peft_config, self.routing, current_key,
                                          patch_size=patch_size)
            if scope is not None and patch_size:
                scope.records_pixels = True
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        # whole blocks have no `.weight` to rebind (the stock method reads it); adapters already follow the block
        setattr(parent, child_name, new_module)

    def _check_merge_allowed(self) -> None:
        raise ValueError(MERGE_REFUSAL)

    def _unload_and_optionally_merge(self, merge: bool = True, progressbar: bool = False, safe_merge: bool = False,
                                     adapter_names: list[str] | None = None) -> nn.Module:
        if merge:
            self._check_merge_allowed()
        for module in self.model.modules():
            if isinstance(module, S4ECALayer):
                remove_hooks(module.base_layer, module)  # the adaptation hook
            remove_forward_scope(module)
        self.routing.unwrap_checkpoints()
        self.routing.text_encoders.clear()
        self.routing.checkpointed.clear()
        return super()._unload_and_optionally_merge(
            merge=False, progressbar=progressbar, safe_merge=safe_merge, adapter_names=adapter_names
        )

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.routing.forget(adapter_name)

    def _adapter_names(self, adapter_name: str | None) -> list[str]:
        names = self.active_adapters if adapter_name is None else [adapter_name]
        unknown = [name for name in names if name not in self.peft_config]
        if unknown:
            raise ValueError(f"Unknown adapter(s) {unknown}; this model has {sorted(self.peft_config)}.")
        return names

    def set_language_proxies(self, proxies: torch.Tensor, adapter_name: str | None = None) -> None:
        """Set the language proxies `(batch, num_queries, text_dim)` that the vision adapters read in one forward,
        ahead of the text adapter's: the calling thread's next forward, or, called from a hook, the one in progress.
        Proxies of batch 1 apply to every image of the call. `adapter_name` defaults to the active adapter(s)."""
        if not isinstance(proxies, torch.Tensor) or proxies.ndim != 3:
            shape = tuple(proxies.shape) if isinstance(proxies, torch.Tensor) else type(proxies).__name__
            raise ValueError(f"`proxies` must be a tensor of shape (batch, num_queries, text_dim), got {shape}.")
        for name in self._adapter_names(adapter_name):
            self.routing.set_proxies(name, proxies)

    def get_language_proxies(self, adapter_name: str | None = None) -> torch.Tensor | None:
        """The proxies `(batch, num_queries, text_dim)` that the text adapter wrote in the calling thread's last
        forward (detached; for inspection), or `None`; during a forward, those of that forward."""
        return self.routing.last_proxies(self._adapter_names(adapter_name)[0])

    def record_selection_maps(self, enabled: bool = True, adapter_name: str | None = None) -> None:
        """Make the vision adapters keep the scale weights and spatial gates of each forward of the calling thread
        (see `get_selection_maps`)."""
        for name in self._adapter_names(adapter_name):
            self.routing.set_recording(name, enabled)

    def get_selection_maps(self, adapter_name: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Layer name -> `{"scale_weights": (batch, n_branches, r), "spatial_gate": (batch, 1, H, W)}` of the calling
        thread's last forward, for visualisation; empty unless `record_selection_maps()` was called in it."""
        return self.routing.selection_maps(self._adapter_names(adapter_name)[0])

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        """Checkpoint key of a model key: `...s4eca_vision_adapter.default.down.weight` ->
        `...s4eca_vision_adapter.down.weight` (peft's rule does not cover nested adapter modules)."""
        for container in (*S4ECATextLayer.adapter_layer_names, *S4ECAVisionLayer.adapter_layer_names):
            marker = f"{container}.{adapter_name}."
            if key.startswith(marker) or f".{marker}" in key:
                return key.replace(marker, f"{container}.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model: nn.Module, config: S4ECAConfig, adapter_name: str,
                                           state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map checkpoint keys to the model, refusing any partial load (backbones of other sizes or depths), naming
        the tensors; the weights' own defects raise `AdapterFileError` first (`checks.py`)."""
        folder = getattr(config, "loaded_from", None)
        source = f"{folder}/{WEIGHTS_NAME}" if folder else f"the weights of adapter {adapter_name!r}"
        check_adapter_tensors(config, state_dict, source)
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        model_state = model.state_dict()
        mismatched = [
            f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(model_state[key].shape)}"
            for key, value in remapped.items()
            if key in model_state and tuple(model_state[key].shape) != tuple(value.shape)
        ]
        if mismatched:
            raise AdapterBackboneMismatchError(
                f"Adapter {adapter_name!r} was trained on backbones of other sizes than this model's; "
                f"{len(mismatched)} tensors differ in shape:\n  " + "\n  ".join(mismatched[:8])
            )
        prefixes = _get_tuner_state_dict_key_prefixes(model, adapter_name=adapter_name)
        expected = set(_filter_state_dict_by_key_prefixes(model_state, prefixes))
        unexpected = sorted(k for k in remapped if f".{cls.prefix}" in k and k not in model_state)
        missing = sorted(expected - set(remapped))
        if unexpected or missing:
            raise AdapterBackboneMismatchError(
                f"Adapter {adapter_name!r} does not fit this model's blocks: {len(unexpected)} checkpoint tensors "
                f"have no place in the model (e.g. {unexpected[:3]}) and {len(missing)} adapter tensors are missing "
                f"from the checkpoint (e.g. {missing[:3]}). Load it into a base model with the same backbones."
            )
        return remapped
