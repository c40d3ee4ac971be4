"""Reading a raster window by window into the model's float RGB, with the package's image rule applied per scene:
bands, values and nodata as docs/geospatial.md ("How the scene is read") describes."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..modeling.image_io import apply_stretch, float_scale, stretch_bounds
from .dependencies import has_rasterio, require_rasterio

GEOTIFF_DRIVERS = ("GTiff", "COG")


def is_georeferenced_geotiff(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a GeoTIFF with a coordinate system (False without rasterio or for an unreadable file)."""
    if not has_rasterio():
        return False
    rasterio = require_rasterio()
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as dataset:
                return dataset.driver in GEOTIFF_DRIVERS and dataset.crs is not None
        except RasterioIOError:
            return False


def select_bands(dataset: Any, bands: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Three 1-based band indexes of ``dataset`` to read as red, green, blue (docs/geospatial.md)."""
    count = dataset.count
    if bands is not None:
        bands = [int(band) for band in bands]
        if len(bands) not in (1, 3):
            raise ValueError(f"bands: give one band (grey) or three (red green blue), got {len(bands)}: {bands}.")
        outside = [band for band in bands if not 1 <= band <= count]
        if outside:
            raise ValueError(f"bands: {outside} not in 1..{count}, the bands of {dataset.name}.")
        return tuple(bands * 3 if len(bands) == 1 else bands)  # type: ignore[return-value]
    names = [getattr(interp, "name", str(interp)) for interp in dataset.colorinterp]
    if all(colour in names for colour in ("red", "green", "blue")):
        return tuple(names.index(colour) + 1 for colour in ("red", "green", "blue"))  # type: ignore[return-value]
    if count >= 3:
        return (1, 2, 3)
    if count == 1:
        return (1, 1, 1)
    raise ValueError(f"{dataset.name} has {count} bands; choose one or three with bands (e.g. --bands 1 2 2).")


@dataclass(frozen=True)
class SceneStretch:
    """The value rule of one scene: ``kind`` is ``"uint8"``, ``"stretch"`` (``low``/``high`` per band) or
    ``"float"`` (multiplied by ``scale``)."""

    kind: str
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    scale: float = 1.0

    @classmethod
    def from_dataset(cls, dataset: Any, bands: Sequence[int], sample_side: int = 2048) -> SceneStretch:
        dtype = np.dtype(dataset.dtypes[bands[0] - 1])
        if dtype == np.uint8:
            return cls("uint8")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise ValueError(f"{dataset.name}: unsupported band type {dtype}; expected integers or floats.")
        factor = max(1, math.ceil(max(dataset.height, dataset.width) / sample_side))
        shape = (len(bands), math.ceil(dataset.height / factor), math.ceil(dataset.width / factor))
        sample = dataset.read(list(bands), out_shape=shape, masked=True)  # (3, h, w); decimated reads use overviews
        valid = ~np.ma.getmaskarray(sample).any(axis=0)
        if not valid.any():
            raise ValueError(f"{dataset.name}: every pixel of bands {list(bands)} is nodata.")
        values = np.ma.getdata(sample)[:, valid].T  # (N, 3)
        if np.issubdtype(dtype, np.integer):
            low, high = stretch_bounds(values)
            return cls("stretch", low=low, high=high)
        if not np.isfinite(values).all():
            raise ValueError(f"{dataset.name}: float bands contain NaN or infinite values outside the nodata mask.")
        return cls("float", scale=float_scale(float(values.max(initial=0.0))))

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(h, w, 3)`` raw values -> ``(h, w, 3)`` float32 in [0, 1]."""
        if self.kind == "uint8":
            return data.astype(np.float32) / 255.0
        if self.kind == "stretch":
            return apply_stretch(data, self.low, self.high)
        return np.clip(np.nan_to_num(data.astype(np.float32)) * self.scale, 0.0, 1.0)


def valid_mask(dataset: Any, bands: Sequence[int], window: Any = None) -> np.ndarray:
    """``(h, w)`` bool: True where no selected band is nodata."""
    masks = dataset.read_masks(sorted(set(bands)), window=window)  # (n, h, w) uint8, 0 = nodata
    return (masks > 0).all(axis=0)


def read_rgb(dataset: Any, bands: Sequence[int], stretch: SceneStretch, window: Any = None) -> np.ndarray:
    """One window (or the whole scene) -> ``(h, w, 3)`` float32 RGB in [0, 1], nodata pixels black."""
    raw = dataset.read(list(bands), window=window)  # (3, h, w)
    rgb = stretch.apply(np.moveaxis(raw, 0, -1))
    rgb[~valid_mask(dataset, bands, window)] = 0.0
    return rgb
