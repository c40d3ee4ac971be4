"""Processor: images and expressions in, model inputs out; mask logits back to each original size."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from ..files import hub_kwargs, write_text_atomic
from .image_io import ImageInput, load_image
from .packaged import resolve_model_reference
from .remote_code import auto_from_pretrained

PROCESSOR_CONFIG_NAME = "s4eca_processor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _expression_text(expression: Any, name: str) -> str:
    """A non-empty expression as text: UTF-8 bytes are decoded; bytes that are not UTF-8 and lone surrogates (what
    Python makes of such bytes in command-line arguments) raise a ValueError naming the position."""
    if isinstance(expression, (bytes, bytearray)):
        try:
            expression = bytes(expression).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{name}: the expression is not UTF-8 text (byte "
                             f"{bytes(expression)[error.start:error.start + 1]!r} at position {error.start}: "
                             f"{error.reason}); pass UTF-8 text.") from error
    if not isinstance(expression, str):
        raise TypeError(f"{name}: expected a string, got {type(expression).__name__}.")
    try:
        expression.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{name}: the expression holds a lone surrogate (U+{ord(expression[error.start]):04X}) at "
                         f"character {error.start}, which is not text; it usually comes from bytes that were not "
                         "UTF-8 (e.g. a command-line argument in another encoding). Pass UTF-8 text.") from error
    if not expression.strip():
        raise ValueError(f"{name}: the expression is empty; describe the object to segment.")
    return expression


class ReferringSegmentationProcessor:
    """Square resize + normalisation of images and tokenisation of expressions, with post-processing.

    Args:
        tokenizer: the text encoder's tokenizer.
        image_size: side of the square input (480 in the published RRSIS protocol).
        image_mean / image_std: per-channel normalisation of the vision backbone (ImageNet by default).
        max_length: tokens per expression, padded and truncated (20 in the published protocol).

    Images are converted to RGB by the rule in `s4eca_peft.modeling.image_io`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_size: int = 480,
                 image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD,
                 max_length: int = 20) -> None:
        if image_size <= 0 or max_length <= 0 or len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"`image_size` and `max_length` must be positive and `image_mean` / `image_std` hold 3 "
                             f"values (RGB), got {image_size}, {max_length}, {image_mean}, {image_std}.")
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.max_length = int(max_length)

    def preprocess_images(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Images -> ``(batch, 3, image_size, image_size)`` normalised float32."""
        mean, std = (torch.tensor(values).view(3, 1, 1) for values in (self.image_mean, self.image_std))
        out = []
        for i, image in enumerate(_as_list(images)):
            array = load_image(image, name=f"images[{i}]")
            tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)
            if tensor.shape[-2:] != (side := (self.image_size, self.image_size)):
                tensor = F.interpolate(tensor, size=side, mode="bilinear", align_corners=False, antialias=True)
            out.append((tensor[0].clamp(0, 1) - mean) / std)
        return torch.stack(out)

    def preprocess_masks(self, masks: Any) -> torch.Tensor:
        """``(H, W)`` masks (bool / 0-1 / 0-255 arrays, tensors or PIL) -> ``(batch, 1, S, S)`` float32 0/1."""
        out = []
        for i, mask in enumerate(_as_list(masks)):
            array = np.asarray(mask)
            if array.ndim != 2 or 0 in array.shape:
                raise ValueError(f"masks[{i}]: expected a non-empty (H, W) mask, got shape {array.shape}.")
            tensor = torch.from_numpy((array > 0).astype(np.float32))[None, None]
            out.append(F.interpolate(tensor, size=(self.image_size, self.image_size), mode="nearest")[0])
        return torch.stack(out)

    def tokenize(self, text: str | bytes | Sequence[str | bytes]) -> dict[str, torch.Tensor]:
        """Expressions (text, or UTF-8 bytes) -> ``input_ids`` / ``attention_mask`` ``(batch, max_length)``."""
        expressions = [_expression_text(expression, f"text[{i}]") for i, expression in enumerate(_as_list(text))]
        return self.tokenizer(expressions, padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def __call__(self, images: ImageInput | Sequence[ImageInput] | None = None,
                 text: str | Sequence[str] | None = None, masks: Any = None,
                 return_tensors: str | None = "pt") -> BatchFeature:
        """Returns ``pixel_values`` ``(B, 3, S, S)``, ``input_ids`` / ``attention_mask`` ``(B, max_length)``, and
        ``labels`` ``(B, 1, S, S)`` when ``masks`` are given."""
        if return_tensors not in (None, "pt"):
            raise ValueError(f"`return_tensors` must be 'pt', got {return_tensors!r}.")
        if images is None and text is None:
            raise ValueError("Give `images`, `text` or both.")
        data: dict[str, Any] = {}
        if images is not None and text is not None and len(_as_list(images)) != len(_as_list(text)):
            raise ValueError(f"Got {len(_as_list(images))} images and {len(_as_list(text))} expressions; expected one "
                             "expression per image.")
        if text is not None:
            encoded = self.tokenize(text)
            data.update(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        if images is not None:
            data["pixel_values"] = self.preprocess_images(images)
        if masks is not None:
            data["labels"] = self.preprocess_masks(masks)
        return BatchFeature(data=data)

    def post_process_probabilities(self, outputs: Any, target_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Mask probabilities ``(H_i, W_i)`` at each original size."""
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"Expected logits of shape (batch, 1, h, w), got {tuple(logits.shape)}.")
        target_sizes = [tuple(int(v) for v in size) for size in target_sizes]
        if len(target_sizes) != logits.shape[0]:
            raise ValueError(f"Got {len(target_sizes)} target sizes for a batch of {logits.shape[0]} logits.")
        probabilities = []
        for sample, size in zip(logits, target_sizes):
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"Each target size must be (height, width) with positive sides, got {size}.")
            upsampled = F.interpolate(sample[None].float(), size=size, mode="bilinear", align_corners=False)
            probabilities.append(upsampled[0, 0].sigmoid())
        return probabilities

    def post_process_masks(self, outputs: Any, target_sizes: Sequence[tuple[int, int]],
                           threshold: float = 0.5) -> list[torch.Tensor]:
        """Boolean masks ``(H_i, W_i)`` at each original size: probability > ``threshold``."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must lie in [0, 1], got {threshold}.")
        return [p > threshold for p in self.post_process_probabilities(outputs, target_sizes)]

    def to_dict(self) -> dict[str, Any]:
        return {"processor_class": type(self).__name__, "image_size": self.image_size,
                "image_mean": list(self.image_mean), "image_std": list(self.image_std), "max_length": self.max_length}

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        write_text_atomic(directory / PROCESSOR_CONFIG_NAME, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> ReferringSegmentationProcessor:
        """From a folder or Hub repo written by `save_pretrained` (``kwargs``: revision, cache_dir, token...)."""
        settings = _read_json(name_or_path, PROCESSOR_CONFIG_NAME, kwargs, required=True)
        settings.pop("processor_class", None)
        return cls(auto_from_pretrained(AutoTokenizer, name_or_path, **kwargs), **settings)

    @classmethod
    def from_backbones(cls, vision_name_or_path: str | None, text_name_or_path: str, image_size: int = 480,
                       max_length: int = 20, vision_revision: str | None = None, text_revision: str | None = None,
                       **kwargs: Any) -> ReferringSegmentationProcessor:
        """Tokenizer of the text encoder; mean/std from the vision backbone's preprocessor config if present.
        ``vision_revision`` / ``text_revision`` override ``revision`` for their side."""
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if vision_name_or_path is not None:
            settings = _read_json(resolve_model_reference(vision_name_or_path), "preprocessor_config.json",
                                  _with_revision(kwargs, vision_revision), required=False)
            if "image_mean" in settings and "image_std" in settings:
                mean, std = settings["image_mean"], settings["image_std"]
        tokenizer = auto_from_pretrained(AutoTokenizer, resolve_model_reference(text_name_or_path),
                                         **_with_revision(kwargs, text_revision))
        return cls(tokenizer, image_size=image_size, image_mean=mean, image_std=std, max_length=max_length)


def _with_revision(kwargs: dict[str, Any], revision: str | None) -> dict[str, Any]:
    return kwargs if revision is None else dict(kwargs, revision=revision)


def _read_json(name_or_path: str | os.PathLike, filename: str, kwargs: dict[str, Any], required: bool) -> dict:
    """``filename`` of a folder or Hub repo; ``{}`` when it has none and it is not ``required``."""
    config_file = Path(name_or_path) / filename
    if not Path(name_or_path).is_dir():
        from huggingface_hub import hf_hub_download

        try:
            config_file = Path(hf_hub_download(str(name_or_path), filename, **hub_kwargs(kwargs)))
        except Exception:  # a backbone without an image processor keeps the ImageNet statistics
            if required:
                raise
            return {}
    if not config_file.is_file():
        if required:
            raise FileNotFoundError(f"No {filename} in {str(Path(name_or_path))!r}.")
        return {}
    return json.loads(config_file.read_text())
