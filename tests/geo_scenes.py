"""Small GeoTIFF scenes written with rasterio, shared by the geospatial tests (import after rasterio is skipped-for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM = ("EPSG:32633", from_origin(500_000.0, 4_000_000.0, 10.0, 10.0))  # 10 m pixels, north-up


WGS84 = ("EPSG:4326", from_origin(12.0, 45.0, 0.0001, 0.0001))


def write_scene(path: Path, data: np.ndarray, crs=UTM[0], transform=UTM[1], nodata=None, colorinterp=None) -> Path:
    """``data`` ``(bands, H, W)`` -> an uncompressed GeoTIFF on the given grid."""
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, nodata=nodata) as sink:
        sink.write(data)
        if colorinterp is not None:
            sink.colorinterp = colorinterp
    return path


def block_scene(height: int, width: int, box: tuple[int, int, int, int], bands: int = 3) -> np.ndarray:
    """Dark uint8 scene with a bright rectangle ``box`` = (top, left, bottom, right)."""
    data = np.full((bands, height, width), 20, np.uint8)
    top, left, bottom, right = box
    data[:, top:bottom, left:right] = 230
    return data


def read_mask(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as mask:
        return mask.read(1), {"crs": mask.crs, "transform": mask.transform, "shape": mask.shape, "nodata": mask.nodata}
