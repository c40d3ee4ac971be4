"""Mask GeoTIFFs: a scratch raster (in a `s4eca_peft.files.private_folder`) filled cell by cell or whole, then copied
to a tiled, compressed GeoTIFF or a Cloud-Optimized GeoTIFF through `s4eca_peft.files.atomic_write`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, private_folder
from .dependencies import require_rasterio
from .reading import select_bands, valid_mask

BACKGROUND, OBJECT, NODATA = 0, 1, 255
MASK_COLORS = {BACKGROUND: (0, 0, 0, 0), OBJECT: (255, 40, 40, 255), NODATA: (0, 0, 0, 0)}
BLOCK = 256


def scratch_profile(source: Any) -> dict[str, Any]:
    """An uncompressed tiled uint8 raster on ``source``'s grid (written cell by cell without growing)."""
    profile = {"driver": "GTiff", "width": source.width, "height": source.height, "count": 1, "dtype": "uint8",
               "crs": source.crs, "transform": source.transform}
    if source.width > BLOCK or source.height > BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    return profile


def open_scratch_mask(scratch: Path, source: Any) -> Any:
    """``scratch`` opened as the uint8 mask raster on ``source``'s grid: nodata 255 and the mask colours."""
    rasterio = require_rasterio()
    sink = rasterio.open(scratch, "w", **scratch_profile(source), nodata=NODATA)
    sink.write_colormap(1, MASK_COLORS)
    return sink


def write_mask_geotiff(mask: np.ndarray, source_path: str | os.PathLike, output: str | os.PathLike) -> Path:
    """A whole ``(H, W)`` boolean mask of the raster at ``source_path`` written as a mask GeoTIFF on its grid."""
    rasterio = require_rasterio()
    output = Path(output)
    with rasterio.open(source_path) as source:
        if np.shape(mask) != (source.height, source.width):
            raise ValueError(f"mask: shape {np.shape(mask)} differs from the raster {str(source_path)!r} "
                             f"({source.height}, {source.width}).")
        valid = valid_mask(source, select_bands(source))
        values = np.where(valid, np.asarray(mask, dtype=bool).astype(np.uint8) * OBJECT, NODATA).astype(np.uint8)
        with private_folder(output) as scratch_dir:
            scratch = scratch_dir / "mask.tif"
            with open_scratch_mask(scratch, source) as sink:
                sink.write(values, 1)
            publish_mask(scratch, output)
    return output


def publish_mask(scratch: Path, output: Path, cog: bool = False) -> None:
    """Copy the scratch mask to ``output``, compressed and tiled, or with ``cog`` as a Cloud-Optimized GeoTIFF."""
    rasterio = require_rasterio()
    options = {"driver": "COG", "BLOCKSIZE": 512, "RESAMPLING": "NEAREST"} if cog else \
        {"driver": "GTiff", "TILED": "YES", "BLOCKXSIZE": 512, "BLOCKYSIZE": 512}
    atomic_write(output, lambda tmp: rasterio.shutil.copy(str(scratch), str(tmp), COMPRESS="DEFLATE", **options))
