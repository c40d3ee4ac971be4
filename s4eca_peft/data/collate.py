"""Batching samples (dataset rows or `SyntheticSceneStream` items) into model inputs through the processor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..modeling.image_io import image_size_of


class ReferringCollator:
    """``collate_fn`` for a `torch.utils.data.DataLoader` over samples with ``image``, ``mask``, ``expression``
    (and optionally ``sample_id``, ``image_id``, ``family``), through ``processor`` (a
    `ReferringSegmentationProcessor`). Samples arrive augmented already where they are (`KeyedTrainingSet`).

    Returns a dict: ``pixel_values`` ``(B, 3, S, S)`` float32, ``input_ids`` / ``attention_mask`` ``(B, T)``,
    ``labels`` ``(B, 1, S, S)`` float32 0/1 (when every sample has a mask), ``category_labels`` alike (when every
    sample has a ``category_mask``: every object of the named category), ``sample_ids``, ``image_ids``,
    ``original_sizes`` (``(H, W)`` per sample), ``expressions`` (as fed to the model) and ``families`` (when every
    sample has one).
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("Cannot collate an empty list of samples.")
        sizes = [image_size_of(sample["image"]) for sample in samples]
        masks = [sample.get("mask") for sample in samples]
        for sample, mask, size in zip(samples, masks, sizes):
            if mask is not None and tuple(np.shape(mask)[:2]) != size:
                raise ValueError(f"Sample {sample.get('sample_id')!r}: mask is {tuple(np.shape(mask)[:2])} but the "
                                 f"image is {size} (H, W).")
        expressions = [sample["expression"] for sample in samples]
        encoded = self.processor(images=[sample["image"] for sample in samples], text=expressions, return_tensors="pt")
        batch = {key: encoded[key] for key in ("pixel_values", "input_ids", "attention_mask")}
        if all(mask is not None for mask in masks):
            batch["labels"] = self.processor.preprocess_masks(masks)
        if all(sample.get("category_mask") is not None for sample in samples):
            batch["category_labels"] = self.processor.preprocess_masks([s["category_mask"] for s in samples])
        batch.update(sample_ids=[sample.get("sample_id") for sample in samples],
                     image_ids=[sample.get("image_id") for sample in samples], original_sizes=sizes,
                     expressions=expressions)
        if all(sample.get("family") is not None for sample in samples):
            batch["families"] = [sample["family"] for sample in samples]
        return batch
