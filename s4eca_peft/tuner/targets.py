"""Which blocks S4ECA adapts: default targets per backbone `model_type`, matching, and helpful errors.

A block belongs to its nearest enclosing `PreTrainedModel`, whose `config.model_type` the two tables below classify,
so the `CLIPEncoderLayer`s of a CLIP *vision* tower are never taken for text blocks.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterable, Mapping

from torch import nn
from transformers import PreTrainedModel

from .errors import AdapterBackboneMismatchError

VISION_BLOCK_CLASSES: dict[str, tuple[str, ...]] = {
    "clip_vision_model": ("CLIPEncoderLayer",),  # also the vision tower of `CLIPModel`
    "convnext": ("ConvNextLayer",),
    "dinov2": ("Dinov2Layer",),
    "dinov2_with_registers": ("Dinov2WithRegistersLayer",),
    "resnet": ("ResNetBottleNeckLayer", "ResNetBasicLayer"),
    "siglip_vision_model": ("SiglipEncoderLayer",),  # also the vision tower of `SiglipModel`
    "swin": ("SwinLayer",),
    "vit": ("ViTLayer",),
}
"""Vision blocks adapted by default: every block of every stage (Swin-B: 24 `SwinLayer`s)."""

TEXT_BLOCK_CLASSES: dict[str, tuple[str, ...]] = {
    "bert": ("BertLayer",),  # MiniLM checkpoints are BERT
    "clip_text_model": ("CLIPEncoderLayer",),
    "roberta": ("RobertaLayer",),
    "siglip_text_model": ("SiglipEncoderLayer",),
}
"""Text blocks; by default only the last one of each text encoder gets the text adapter."""


def enclosing_pretrained_models(model: nn.Module) -> dict[str, PreTrainedModel]:
    """Every `PreTrainedModel` in `model` (the root included, as `""`), by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, PreTrainedModel)}


def owner_of(name: str, pretrained: dict[str, PreTrainedModel]) -> tuple[str, PreTrainedModel | None]:
    """The nearest `PreTrainedModel` enclosing the module called `name` (the module itself excluded)."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:depth])
        if prefix in pretrained:
            return prefix, pretrained[prefix]
    return "", None


def family_of(name: str, pretrained: dict[str, PreTrainedModel]) -> str | None:
    """`"text"`, `"vision"` or `None`, from the `model_type` of the module's enclosing `PreTrainedModel`."""
    _, owner = owner_of(name, pretrained)
    model_type = getattr(getattr(owner, "config", None), "model_type", None)
    if model_type in TEXT_BLOCK_CLASSES:
        return "text"
    if model_type in VISION_BLOCK_CLASSES:
        return "vision"
    return None


def default_targets(model: nn.Module) -> tuple[list[str], list[str]]:
    """Default `(text, vision)` target names: the last text block per text encoder, every vision block."""
    pretrained = enclosing_pretrained_models(model)
    text_by_owner: dict[str, list[str]] = {}
    vision: list[str] = []
    for name, module in model.named_modules():
        if not name or _inside_tuner_layer(name):
            continue
        owner_name, owner = owner_of(name, pretrained)
        model_type = getattr(getattr(owner, "config", None), "model_type", None)
        class_name = block_class_name(module)
        if class_name in TEXT_BLOCK_CLASSES.get(model_type, ()):
            text_by_owner.setdefault(owner_name, []).append(name)
        elif class_name in VISION_BLOCK_CLASSES.get(model_type, ()):
            vision.append(name)
    text = [names[-1] for names in text_by_owner.values()]
    return text, vision


def block_class_name(module: nn.Module) -> str:
    """Class name of a block, looking through a tuner layer that wraps it (when adding a second adapter)."""
    get_base_layer = getattr(module, "get_base_layer", None)
    return type(get_base_layer() if callable(get_base_layer) else module).__name__


def _inside_tuner_layer(name: str) -> bool:
    return name == "base_layer" or name.endswith(".base_layer") or ".base_layer." in name


def matches(spec: list[str] | str | None, key: str) -> bool:
    """peft's matching rule: a regex matches the full name; a list entry matches exactly or as a dotted suffix."""
    if spec is None:
        return False
    if isinstance(spec, str):
        return re.fullmatch(spec, key) is not None
    return any(key == target or key.endswith("." + target) for target in spec)


def candidate_blocks(model: nn.Module, limit: int = 6, prefix: str = "") -> str:
    """A readable list of the blocks `model` has, grouped by class, for error messages (names under `prefix`)."""
    by_class: dict[str, list[str]] = {}
    for name, module in model.named_modules(prefix=prefix):
        if _inside_tuner_layer(name) or ".s4eca_" in name:
            continue
        class_name = block_class_name(module)
        is_block = class_name.endswith(("Layer", "Block", "Stage"))
        has_params = any(True for _ in module.parameters(recurse=False)) or len(module._modules) > 0
        if name != prefix and has_params and (is_block or not isinstance(module, (nn.ModuleList, nn.Sequential))):
            by_class.setdefault(class_name, []).append(name)
    blocks = {k: v for k, v in by_class.items() if k.endswith(("Layer", "Block", "Stage"))} or by_class
    lines = []
    for class_name, names in sorted(blocks.items(), key=lambda item: -len(item[1]))[:12]:
        shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
        lines.append(f"  {class_name} ({len(names)}): {shown}")
    return "\n".join(lines)


def check_default_targets_unchanged(
    config, defaults: dict[str, list[str]], specs: dict[str, list[str] | str | None]
) -> None:
    """For a saved adapter whose targets were the defaults of the model it was made on, refuse a base model whose
    defaults differ (a deeper backbone whose extra blocks would silently run unadapted, or a shallower one)."""
    for role in config.targets_from_defaults:
        recorded = specs[role]
        if recorded is None or isinstance(recorded, str):
            continue
        extra = sorted(set(defaults[role]) - set(recorded))
        missing = sorted(set(recorded) - set(defaults[role]))
        if extra or missing:
            found = [f"blocks this model has that the adapter was not trained for: {extra[:4]}"] if extra else []
            found += [f"blocks of the adapter that this model lacks: {missing[:4]}"] if missing else []
            raise AdapterBackboneMismatchError(
                f"This adapter was made on a {role} encoder with {len(recorded)} adapted blocks (the defaults of that "
                f"model), but this base model's {role} encoder gives {len(defaults[role])}: {'; '.join(found)}. Load "
                "it into a base model with the same encoder depth (the one named in the adapter's base model config)."
            )


def check_targets(
    model: nn.Module,
    text_spec: list[str] | str | None,
    vision_spec: list[str] | str | None,
) -> tuple[list[str], list[str]]:
    """Resolve both specs against `model`, refusing a spec that matches nothing (listing the model's blocks), a module
    matched by both, a target nested in another, and a target in a backbone of the other modality."""
    names = [name for name, _ in model.named_modules() if name]
    text = [name for name in names if matches(text_spec, name)]
    vision = [name for name in names if matches(vision_spec, name)]
    for field_name, spec, found in (("text", text_spec, text), ("vision", vision_spec, vision)):
        unmatched = _unmatched_entries(spec, names)
        if spec is not None and (not found or unmatched):
            what = unmatched if unmatched else spec
            raise ValueError(
                f"`{field_name}_target_modules` entry {what!r} matches no module of {type(model).__name__}. "
                f"Use full dotted names (or a regex on them) of blocks the model has:\n{candidate_blocks(model)}"
            )
    both = sorted(set(text) & set(vision))
    if both:
        raise ValueError(f"Modules {both[:4]} match both `text_target_modules` and `vision_target_modules`.")
    chosen = sorted(text + vision)
    for outer, inner in zip(chosen, chosen[1:]):
        if inner.startswith(outer + "."):
            raise ValueError(
                f"Target {inner!r} lies inside target {outer!r}; S4ECA wraps whole blocks, target only one of them."
            )
    pretrained = enclosing_pretrained_models(model)
    for role, found in (("text", text), ("vision", vision)):
        for name in found:
            family = family_of(name, pretrained)
            if family is not None and family != role:
                raise ValueError(
                    f"{name!r} ({block_class_name(model.get_submodule(name))}) belongs to a {family} backbone but is "
                    f"matched by `{role}_target_modules`; move it to `{family}_target_modules` or narrow the pattern."
                )
    return text, vision


def _unmatched_entries(spec: list[str] | str | None, names: list[str]) -> list[str]:
    if spec is None or isinstance(spec, str):
        return []
    return [target for target in spec if not any(matches([target], name) for name in names)]


def check_readable_outputs(model: nn.Module, names: Iterable[str]) -> None:
    """Refuse targets whose output the adapters cannot read: they adapt blocks returning hidden states as a tensor
    (or a tuple starting with one), not whole models, encoders returning a `ModelOutput`/dict, or containers."""
    for name in names:
        module = model.get_submodule(name)
        block = module.get_base_layer() if callable(getattr(module, "get_base_layer", None)) else module
        why = _unreadable_output(block)
        if why:
            raise ValueError(
                f"Target {name!r} ({type(block).__name__}) {why}, which an S4ECA adapter cannot read: it adapts "
                "blocks that return their hidden states as a tensor or as the first item of a tuple. Target the "
                f"blocks inside it instead:\n{candidate_blocks(block, prefix=name)}"
            )


def _unreadable_output(block: nn.Module) -> str:
    """Why `block`'s output cannot be adapted, from its type and `forward` signature ("" if it can)."""
    if isinstance(block, PreTrainedModel):
        return "is a whole model and returns a ModelOutput"
    if type(block).forward is nn.Module.forward:
        return "has no forward of its own"
    signature = inspect.signature(type(block).forward)
    if "return_dict" in signature.parameters:
        return "returns a ModelOutput (it takes `return_dict`)"
    if _is_mapping_annotation(signature.return_annotation):
        return f"returns a mapping ({signature.return_annotation})"
    return ""


def _is_mapping_annotation(annotation) -> bool:
    if annotation is inspect.Signature.empty:
        return False
    if isinstance(annotation, str):
        return re.search(r"\b(dict|Dict|Mapping|OrderedDict|\w*Output)\b", annotation) is not None
    if isinstance(annotation, type):
        return issubclass(annotation, Mapping)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return True
    return any(_is_mapping_annotation(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def unadapted_encoders(model: nn.Module, targets: Iterable[str]) -> dict[str, PreTrainedModel]:
    """Encoders that would run unadapted: `PreTrainedModel`s without default targets (their `model_type` is in
    neither table), holding no other `PreTrainedModel`, that contain no target and lie inside none."""
    targets = list(targets)
    pretrained = enclosing_pretrained_models(model)
    found = {}
    for name, module in pretrained.items():
        model_type = getattr(module.config, "model_type", None)
        if model_type in TEXT_BLOCK_CLASSES or model_type in VISION_BLOCK_CLASSES:
            continue
        if any(other is not module and _inside(other_name, name) for other_name, other in pretrained.items()):
            continue  # a composite (e.g. a task model around encoders): its encoders are checked themselves
        if any(_inside(target, name) or _inside(name, target) for target in targets):
            continue
        found[name] = module
    return found


def head_like_modules(model: nn.Module, saved: Iterable[str], targets: Iterable[str]) -> list[str]:
    """Modules that look like a task head (`*head*`, `*classifier*`, `*decoder*` by name or class), outside the
    encoders that hold the targets and outside `saved`: S4ECA would leave them frozen."""
    pretrained = enclosing_pretrained_models(model)
    encoders = {owner_of(target, pretrained)[0] for target in targets}
    saved = list(saved)
    heads: list[str] = []
    for name, module in model.named_modules():
        if not name or _inside_tuner_layer(name) or not any(True for _ in module.parameters()):
            continue
        if any(_inside(name, outer) for outer in (*encoders, *saved, *heads)):
            continue
        if re.search(r"head|classifier|decoder", f"{name.rsplit('.', 1)[-1]} {type(module).__name__}", re.I):
            heads.append(name)
    return heads


def _inside(name: str, outer: str) -> bool:
    """`name` is `outer` or lies inside it (`""` is the root, which holds everything)."""
    return outer == "" or name == outer or name.startswith(outer + ".")
