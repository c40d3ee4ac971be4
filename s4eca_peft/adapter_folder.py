"""The adapter folder: save a trained adapter with everything inference needs, and rebuild it from a folder or the
Hub. Its layout (the PEFT adapter, the processor, ``s4eca_base/`` with the base config and, when a backbone is a local
folder, the frozen base weights, and ``s4eca_metadata.json``) is described in docs/inference.md. A training run keeps
its best adapter in ``<output_dir>/adapter/``; every reader given a run folder reads that subfolder (`adapter_root`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .adapter_schema import check_adapter_schema, resolve_backbone
from .files import (
    PICKLE_SUFFIXES,
    atomic_write_folder,
    hub_kwargs,
    hub_snapshot,
    is_hub_id,
    is_path_like,
    write_json_atomic,
)
from .modeling import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationProcessor
from .modeling.configuration import MODEL_OPTIONS
from .modeling.packaged import is_package_reference, resolve_model_reference
from .modeling.processing import PROCESSOR_CONFIG_NAME
from .tuner.checks import CONFIG_NAME as ADAPTER_CONFIG
from .tuner.checks import WEIGHTS_NAME as ADAPTER_WEIGHTS
from .tuner.checks import check_adapter_folder
from .tuner.errors import AdapterBackboneMismatchError, AdapterFileError

BASE_DIR = "s4eca_base"
METADATA_NAME = "s4eca_metadata.json"
RUN_ADAPTER_DIR = "adapter"  # where a training run's folder keeps its best adapter
RUN_LEVEL_FILES = ("README.md", "eval_results.json", "widget/scene.png")  # beside adapter/, travel with it
PUBLISHED_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROCESSOR_CONFIG_NAME, METADATA_NAME, f"{BASE_DIR}/config.json",
                   f"{BASE_DIR}/model.safetensors", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                   "processor_config.json", *RUN_LEVEL_FILES)
"""Paths of an adapter folder that are published (the Hub push) or shipped (the reference adapter); checkpoints, logs,
pictures and anything pickled stay behind."""


def adapter_root(folder: str | os.PathLike) -> Path:
    """The adapter folder ``folder`` stands for: its ``adapter/`` subfolder when that holds an adapter, else itself."""
    run_adapter = Path(folder) / RUN_ADAPTER_DIR
    return run_adapter if (run_adapter / ADAPTER_CONFIG).is_file() else Path(folder)


def base_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base model's own tensors, from a plain or a PEFT-wrapped model."""
    state = {}
    for key, value in model.state_dict().items():
        if ".modules_to_save." in key or ".s4eca_" in key or key.startswith("s4eca_"):
            continue
        key = key.replace(".original_module.", ".").replace(".base_layer.", ".")
        state[key] = value.detach().contiguous().clone()
    return state


ARCHITECTURE_FIELDS = ("model_type", "depths", "embed_dim", "hidden_sizes", "hidden_size", "num_hidden_layers",
                       "num_heads", "num_attention_heads", "patch_size", "window_size", "layer_type", "vocab_size",
                       "intermediate_size")


def backbone_architecture(config: ReferringSegmentationConfig) -> dict[str, dict[str, Any]]:
    """The shape-defining fields of both encoders' configs (what an adapter depends on)."""
    sides = {name: getattr(config, name).to_dict() for name in ("vision_config", "text_config")}
    return {name: {key: sub[key] for key in ARCHITECTURE_FIELDS if key in sub} for name, sub in sides.items()}


def recorded_backbones(config: ReferringSegmentationConfig) -> str:
    """``vision 'owner/swin', text a bert built from a config (s4eca_base/config.json)``."""
    described = [repr(name) if (name := getattr(config, f"{side}_name_or_path", None))
                 else f"a {getattr(config, f'{side}_config').model_type} built from a config"
                 for side in ("vision", "text")]
    return f"vision {described[0]}, text {described[1]} ({BASE_DIR}/config.json)"


def check_backbone_architecture(recorded: dict[str, Any], config: ReferringSegmentationConfig, source: str) -> None:
    """Refuse a rebuilt base whose encoders differ from those the adapter was trained on (e.g. a deeper Swin)."""
    actual = backbone_architecture(config)
    for name, fields in recorded.items():
        differing = {k: (v, actual.get(name, {}).get(k)) for k, v in fields.items() if actual.get(name, {}).get(k) != v}
        if differing:
            details = ", ".join(f"{k}: trained {a!r}, found {b!r}" for k, (a, b) in differing.items())
            raise AdapterBackboneMismatchError(f"The adapter in {source!r} (adapter_model.safetensors) does not fit the "
                                               f"base model rebuilt from {BASE_DIR}/: it was trained on other backbones "
                                               f"({name}: {details}).")


def loadable_by_name(name_or_path: Any) -> bool:
    """Whether an encoder recorded as ``name_or_path`` loads anywhere by name: a Hub id or a package reference."""
    return is_hub_id(name_or_path) or is_package_reference(name_or_path)


def _check_replaceable_export(folder: Path, export: Path) -> None:
    """Refuse to replace ``folder`` unless it is empty or an earlier export holding only what an export writes."""
    present = sorted(p.name for p in folder.iterdir())
    if present and not (folder / METADATA_NAME).is_file():
        raise ValueError(f"{str(folder)!r} holds files but no {METADATA_NAME}: it is not an earlier adapter export, and "
                         f"an export replaces its folder as a whole ({', '.join(present[:5])}). Choose a new or empty "
                         "folder.")
    foreign = [name for name in present if name != BASE_DIR and not (export / name).exists()]
    if foreign:
        raise ValueError(f"{str(folder)!r} holds files a new export would not keep ({', '.join(foreign[:5])}); an "
                         "export replaces its folder as a whole. Move them out or choose another folder.")


def save_for_inference(peft_model: Any, processor: ReferringSegmentationProcessor, output_dir: str | os.PathLike,
                       extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write the adapter, processor, base config (and base weights when a backbone is a local folder) and metadata as
    the folder ``output_dir``, whole (`s4eca_peft.files.atomic_write_folder`). An existing ``output_dir`` is replaced
    only when it is empty or an earlier export with no other files (a ValueError names them otherwise)."""
    base = peft_model.get_base_model()
    config: ReferringSegmentationConfig = base.config

    def write(staging: Path) -> None:
        peft_model.save_pretrained(staging)
        (staging / "README.md").unlink(missing_ok=True)  # the model card is ours, written separately
        processor.save_pretrained(staging)
        (staging / BASE_DIR).mkdir()
        config.save_pretrained(staging / BASE_DIR)
        ships_weights = not all(map(loadable_by_name, (config.vision_name_or_path, config.text_name_or_path)))
        if ships_weights:
            save_file(base_state_dict(base), str(staging / BASE_DIR / "model.safetensors"))
        metadata = {"image_size": processor.image_size, "base_weights_included": ships_weights,
                    "backbone_architecture": backbone_architecture(config), **(extra_metadata or {})}
        write_json_atomic(staging / METADATA_NAME, metadata)

    return atomic_write_folder(output_dir, write, check_replaceable=_check_replaceable_export)


def resolve_adapter_folder(name_or_path: str | os.PathLike, revision: str | None, cache_dir: str | None, token: Any) -> Path:
    """The local folder of an adapter folder, a package reference or a Hub repo id (never a path-like name)."""
    if is_package_reference(str(name_or_path)):
        if revision is not None:
            raise ValueError(f"{str(name_or_path)!r} is an adapter shipped with the package, not a Hub repo: revision "
                             f"{revision!r} cannot apply.")
        return Path(resolve_model_reference(str(name_or_path)))
    path = Path(name_or_path)
    if path.is_dir():
        return adapter_root(path)
    if path.exists():
        raise NotADirectoryError(f"{str(name_or_path)!r} is a file; an adapter is a folder (or a Hub repo id).")
    if is_path_like(name_or_path):
        raise FileNotFoundError(f"{str(name_or_path)!r} is not an adapter folder: no such path (a name that looks "
                                "like a local path is never looked up on the Hub).")
    if not is_hub_id(name_or_path):
        raise FileNotFoundError(f"{str(name_or_path)!r} is not an adapter folder (nor a Hub repo id owner/name).")
    return adapter_root(hub_snapshot(str(name_or_path), revision, cache_dir=cache_dir, token=token))


def check_adapter_files(root: Path) -> None:
    """Refuse pickle-only adapters and unreadable safetensors, naming the file."""
    weights = root / ADAPTER_WEIGHTS
    pickles = [] if weights.is_file() else sorted(p.name for p in root.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{str(root)!r} holds only pickle weights ({', '.join(pickles)}); they are never loaded "
                         f"because unpickling can run code. Convert them to {ADAPTER_WEIGHTS} with safetensors.")
    for file in [weights, root / BASE_DIR / "model.safetensors"]:
        if file.is_file():
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        handle.get_slice(key)
            except (SafetensorError, OSError, ValueError) as error:
                raise ValueError(f"{str(file)!r} is not a readable safetensors file (corrupted or truncated): {error}") \
                    from error


def load_base_model(root: str | os.PathLike, **hub_options: Any) -> ReferringSegmentationModel:
    """The frozen base model recorded in ``root/s4eca_base``, Hub backbones at the commits recorded there."""
    root = Path(root)
    base_dir = root / BASE_DIR
    if not (base_dir / "config.json").is_file():
        raise FileNotFoundError(f"No {BASE_DIR}/config.json in {str(root)!r}: cannot tell which backbones to build.")
    config = ReferringSegmentationConfig.from_pretrained(base_dir)
    for side in ("vision", "text"):  # relative paths are read from the adapter folder
        setattr(config, f"{side}_name_or_path", resolve_backbone(root, getattr(config, f"{side}_name_or_path")))
    weights = base_dir / "model.safetensors"
    if weights.is_file():
        model = ReferringSegmentationModel(config)
        result = model.load_state_dict(load_file(str(weights)), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{str(weights)!r} does not match the base model of {BASE_DIR}/config.json: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
        return model
    names = (config.vision_name_or_path, config.text_name_or_path)
    if not all(name and (loadable_by_name(name) or Path(name).is_dir()) for name in names):
        raise FileNotFoundError(f"{str(weights)!r} is missing, and the base model of this adapter "
                                f"({recorded_backbones(config)}) is neither on the Hub nor in a local folder, so its "
                                "frozen weights must be in that file. Copy the complete adapter folder again.")
    return ReferringSegmentationModel.from_backbones(
        config.vision_name_or_path, config.text_name_or_path, vision_revision=getattr(config, "vision_revision", None),
        text_revision=getattr(config, "text_revision", None), **{key: getattr(config, key) for key in MODEL_OPTIONS},
        **hub_options,
    )


def load_for_inference(name_or_path: str | os.PathLike, revision: str | None = None,
                       device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                       cache_dir: str | None = None, token: Any = None,
                       ) -> tuple[Any, ReferringSegmentationProcessor, dict[str, Any]]:
    """Rebuild ``(peft_model in eval mode, processor, metadata)`` from an adapter folder or Hub repo."""
    from peft import PeftModel

    root = resolve_adapter_folder(name_or_path, revision, cache_dir, token)
    check_adapter_files(root)
    check_adapter_folder(root)  # the adapter's own files (config JSON and values, finite weights), naming the file
    metadata = check_adapter_schema(root)  # every other JSON file, naming the file and field
    base = load_base_model(root, **hub_kwargs({"cache_dir": cache_dir, "token": token}))
    if "backbone_architecture" in metadata:
        check_backbone_architecture(metadata["backbone_architecture"], base.config, str(name_or_path))
    try:
        model = PeftModel.from_pretrained(base, str(root), is_trainable=False)
    except AdapterBackboneMismatchError as error:
        raise AdapterBackboneMismatchError(f"The adapter in {str(name_or_path)!r} ({ADAPTER_WEIGHTS}) does not fit the "
                                           f"base model rebuilt from {recorded_backbones(base.config)}: it was trained "
                                           f"on other backbones. {error}") from error
    try:
        processor = ReferringSegmentationProcessor.from_pretrained(root)
    except Exception as error:  # noqa: BLE001 - tokenizers raise KeyError, Exception, ... for a bad tokenizer.json
        raise AdapterFileError(f"{root}: the tokenizer files cannot be loaded ({type(error).__name__}: {error}).") \
            from error
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, processor, metadata
