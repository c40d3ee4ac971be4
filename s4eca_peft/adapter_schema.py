"""One schema for the JSON files of an adapter folder other than ``adapter_config.json`` (checked by
`s4eca_peft.tuner.checks`): types, ranges, finite numbers and depth, checked before any of them is used, and a refusal
that names the file and the field (docs/security.md). Fields not listed are kept as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import is_hub_id_spelling, open_regular, parse_json
from .modeling.packaged import is_package_reference
from .tuner.config import MAX_WIDTH
from .tuner.errors import AdapterFileError

MAX_CONFIG_BYTES = 1 << 20  # largest JSON file read (a real one is a few kilobytes)
MAX_IMAGE_SIZE = 4096  # largest image_size of the processor and the metadata (480 in the protocol)
MAX_TOKENS = 4096  # largest max_length (tokens per expression) and max_position_embeddings
MAX_LAYERS = 256  # largest layer, head and stage count in a backbone config
MAX_VOCAB = 1 << 20  # largest vocab_size of a text encoder


@dataclass(frozen=True)
class Field:
    """What one JSON field may hold: a type (``"int"``, ``"number"``, ``"bool"``, ``"str"``, ``"object"``), a range,
    a list of ``length`` such items (0: any length; None: not a list), and whether ``null`` is allowed."""

    kind: str
    low: float | None = None
    high: float | None = None
    length: int | None = None
    nullable: bool = False


def _size(high: float, length: int | None = None) -> Field:
    return Field("int", 1, high, length)


_BACKBONE_FIELDS = {
    **dict.fromkeys(("hidden_size", "embed_dim", "embedding_size"), _size(MAX_WIDTH)),
    **dict.fromkeys(("num_hidden_layers", "num_attention_heads"), _size(MAX_LAYERS)),
    **dict.fromkeys(("patch_size", "window_size", "image_size"), _size(MAX_IMAGE_SIZE)),
    "intermediate_size": _size(4 * MAX_WIDTH), "hidden_sizes": _size(MAX_WIDTH, 0), "depths": _size(MAX_LAYERS, 0),
    "num_heads": _size(MAX_LAYERS, 0), "num_channels": _size(16), "vocab_size": _size(MAX_VOCAB),
    "max_position_embeddings": _size(MAX_TOKENS), "model_type": Field("str"),
}

_TEXT = Field("str", nullable=True)
SCHEMAS: dict[str, dict[str, Field]] = {
    "s4eca_processor_config.json": {
        "image_size": Field("int", 16, MAX_IMAGE_SIZE), "max_length": Field("int", 1, MAX_TOKENS),
        "image_mean": Field("number", -10.0, 10.0, length=3), "image_std": Field("number", 1e-6, 10.0, length=3),
        "processor_class": Field("str"),
    },
    "s4eca_base/config.json": {
        "vision_config": Field("object"), "text_config": Field("object"), "decoder_dim": _size(MAX_WIDTH),
        "head_reads_sentence": Field("bool"), "head_place_kernel": Field("bool"), "freeze_backbones": Field("bool"),
        **dict.fromkeys(("head_rank_kernel", "head_category_map", "head_rank_words", "head_rank_product"), Field("bool")),
        "head_sentence_dropout": Field("number", 0.0, 1.0),
        "vit_feature_layers": Field("int", -MAX_LAYERS, MAX_LAYERS, length=4, nullable=True),
        "bce_weight": Field("number", 0.0, 1e3), "dice_weight": Field("number", 0.0, 1e3),
        **dict.fromkeys(("vision_name_or_path", "text_name_or_path", "vision_revision", "text_revision"), _TEXT),
    },
    "s4eca_metadata.json": {
        "image_size": Field("int", 16, MAX_IMAGE_SIZE), "base_weights_included": Field("bool"),
        "backbone_architecture": Field("object"),
    },
}

_TYPES = {"int": int, "number": (int, float), "bool": bool, "str": str, "object": dict}


def _refuse(file: Path, where: str, expected: str, value: Any) -> AdapterFileError:
    shown = repr(value) if isinstance(value, (int, float, bool)) or value is None else f"a {type(value).__name__}"
    return AdapterFileError(f"{file}: `{where}` must be {expected}, got {shown}.")


def _check_value(file: Path, where: str, field: Field, value: Any) -> None:
    if value is None and field.nullable:
        return
    if field.length is not None:
        if not isinstance(value, list) or (field.length and len(value) != field.length):
            raise _refuse(file, where, f"a list of {f'{field.length} ' if field.length else ''}{field.kind} values", value)
        for index, item in enumerate(value):
            _check_value(file, f"{where}[{index}]", Field(field.kind, field.low, field.high), item)
    elif not isinstance(value, _TYPES[field.kind]) or (isinstance(value, bool) and field.kind != "bool"):
        raise _refuse(file, where, f"a{'n' if field.kind[0] in 'io' else ''} {field.kind}", value)
    elif field.kind in ("int", "number") and not field.low <= value <= field.high:  # NaN and infinities fail too
        raise _refuse(file, where, f"a finite {field.kind} in [{field.low:g}, {field.high:g}]", value)


def check_fields(file: Path, data: Any, fields: dict[str, Field], prefix: str = "") -> dict[str, Any]:
    """``data`` (the JSON of ``file``) checked against ``fields``, or an `AdapterFileError` naming the field."""
    if not isinstance(data, dict):
        raise AdapterFileError(f"{file}: {'`' + prefix.rstrip('.') + '` ' if prefix else ''}must be a JSON object, "
                               f"got a {type(data).__name__}.")
    for name, field in fields.items():
        if name in data:
            _check_value(file, prefix + name, field, data[name])
    return data


def read_adapter_file(root: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The JSON object ``root/name`` checked against its schema in `SCHEMAS`; None when the file is absent."""
    file = Path(root) / name
    if not os.path.lexists(file):
        return None
    try:
        with open_regular(file, str(file)) as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as error:
        raise AdapterFileError(f"{file}: cannot be read ({error}).") from error
    if len(text) > MAX_CONFIG_BYTES:
        raise AdapterFileError(f"{file}: larger than MAX_CONFIG_BYTES = {MAX_CONFIG_BYTES} bytes.")
    try:
        data = check_fields(file, parse_json(text, str(file)), SCHEMAS[name])
    except ValueError as error:  # not JSON, too deep, or a field refused (already an AdapterFileError)
        raise AdapterFileError(str(error)) from error
    base = name == "s4eca_base/config.json"  # the metadata records the same encoder fields; the processor has none
    encoders = {side: data[side] for side in ("vision_config", "text_config") if side in data} if base else \
        data.get("backbone_architecture", {})
    for side, fields in encoders.items():
        check_fields(file, fields, _BACKBONE_FIELDS, prefix=f"{'' if base else 'backbone_architecture.'}{side}.")
    return data


def check_adapter_schema(root: str | os.PathLike) -> dict[str, Any]:
    """Check every JSON file of the adapter folder ``root`` against `SCHEMAS`; returns its metadata (or ``{}``)."""
    found = {name: read_adapter_file(root, name) for name in SCHEMAS}
    return found["s4eca_metadata.json"] or {}


def resolve_backbone(root: str | os.PathLike, name: str | None) -> str | None:
    """A backbone recorded as ``name`` in ``root/s4eca_base/config.json``: a package reference, an absolute path or a
    Hub id as it is; any other name is a path in the adapter folder ``root`` (never the working directory)."""
    if name is None or is_package_reference(name) or os.path.isabs(name):
        return name
    local = Path(root) / name
    if os.path.lexists(local) or name.startswith((".", "~")) or "\\" in name or not is_hub_id_spelling(name):
        return str(local)
    return name


__all__ = ["MAX_CONFIG_BYTES", "SCHEMAS", "check_adapter_schema", "read_adapter_file", "resolve_backbone"]
