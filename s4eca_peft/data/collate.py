"""Batching samples (dataset rows or `SyntheticSceneStream` items) into model inputs through the processor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..modeling.image_io import image_size_of


class ReferringCollator:
    """``collate_fn`` for a `torch.utils.data.DataLoader` over samples with ``image``, ``mask``, ``expression``
    (and optionally ``sample_id``, ``image_id``).

    Args:
        processor: a `ReferringSegmentationProcessor` (resizes, normalises, tokenizes; masks by nearest).

    Samples arrive augmented already where they are (training reads them through
    `s4eca_peft.data.loaders.KeyedTrainingSet`, which keys the augmentation by the sample).

    Returns a dict: ``pixel_values`` ``(B, 3, S, S)`` float32, ``input_ids`` / ``attention_mask`` ``(B, T)``,
    ``labels`` ``(B, 1, S, S)`` float32 0/1 (when every sample has a mask), ``sample_ids``, ``image_ids``,
    ``original_sizes`` (``(H, W)`` per sample), ``expressions`` (as fed to the model) and ``families`` (when every
    sample has an expression ``family``).
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("Cannot collate an empty list of samples.")
        sizes = [image_size_of(sample["image"]) for sample in samples]
        for sample, size in zip(samples, sizes):
            mask = sample.get("mask")
            mask_size = None if mask is None else tuple(np.asarray(mask).shape[:2])
            if mask_size is not None and mask_size != size:
                raise ValueError(
                    f"Sample {sample.get('sample_id')!r}: mask is {mask_size} but the image is {size} (H, W)."
                )
        images = [sample["image"] for sample in samples]
        expressions = [sample["expression"] for sample in samples]
        encoded = self.processor(images=images, text=expressions, return_tensors="pt")
        batch: dict[str, Any] = {
            "pixel_values": encoded["pixel_values"],
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
        }
        masks = [sample.get("mask") for sample in samples]
        if all(mask is not None for mask in masks):
            batch["labels"] = self.processor.preprocess_masks(masks)
        batch["sample_ids"] = [sample.get("sample_id") for sample in samples]
        batch["image_ids"] = [sample.get("image_id") for sample in samples]
        batch["original_sizes"] = sizes
        batch["expressions"] = expressions
        if all(sample.get("family") is not None for sample in samples):
            batch["families"] = [sample["family"] for sample in samples]
        return batch
