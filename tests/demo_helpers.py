"""Demo test inputs: a tiny adapter whose mask splits a given scene (so masks compare non-trivially) and GeoTIFF scenes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import build_tiny_adapter

from s4eca_peft.inference import S4ECASegmenter, save_for_inference


def build_split_adapter(folder: Path, image: Path, expression: str) -> Path:
    """The random tiny test adapter with its head's output bias shifted so that about half of ``image`` is
    foreground for ``expression`` at threshold 0.5 (a random head predicts nearly uniform low probabilities)."""
    segmenter = S4ECASegmenter.from_pretrained(build_tiny_adapter(folder / "raw"), device="cpu")
    median = float(np.median(segmenter.predict(image, expression, return_probabilities=True).probabilities))
    heads = [m for n, m in segmenter.model.named_modules() if n.endswith("modules_to_save.default.classifier")]
    assert len(heads) == 1, "expected one trainable copy of the head's classifier"
    with torch.no_grad():
        heads[0].bias -= math.log(median / (1.0 - median))
    return save_for_inference(segmenter.model, segmenter.processor, folder / "split")


def write_geotiff(path: Path, image: Path, crs: str | None) -> Path:
    """The pixels of ``image`` as a 3-band uint8 GeoTIFF, on a 0.5 m UTM grid when ``crs`` is given."""
    rasterio = pytest.importorskip("rasterio", reason="the geo extra (pip install 's4eca-peft[geo]') installs rasterio")
    from rasterio.transform import from_origin

    pixels = np.moveaxis(np.asarray(Image.open(image).convert("RGB")), -1, 0)  # (3, H, W)
    grid = {"crs": crs, "transform": from_origin(500_000.0, 4_000_000.0, 0.5, 0.5)} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", **grid) as sink:
        sink.write(pixels)
    return path
