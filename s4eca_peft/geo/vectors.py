"""Polygons of a mask raster, with the mean probability inside each, written as GeoJSON or GeoPackage in the
raster's coordinate system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .dependencies import require_fiona, require_rasterio
from .writing import OBJECT, atomic_path

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg")


def check_vector_path(path: Path) -> None:
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise ValueError(f"vector: polygons are written as .geojson or .gpkg, got {str(path)!r}.")


def mask_polygons(mask_path: Path, score_path: Path | None) -> list[tuple[dict, float | None, int]]:
    """``(GeoJSON polygon in world coordinates, mean probability, pixel count)`` per 4-connected object region of
    the mask raster; ``score_path`` holds probabilities scaled to 0-255 on the same grid. GDAL reads the raster line
    by line, so memory follows the polygons, not the scene."""
    rasterio = require_rasterio()
    from rasterio.features import geometry_mask, shapes
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    polygons = []
    with rasterio.open(mask_path) as mask_file:
        band = rasterio.band(mask_file, 1)  # a band source: GDAL returns world coordinates
        to_pixels = ~mask_file.transform
        scores = rasterio.open(score_path) if score_path is not None else None
        try:
            for geometry, value in shapes(band, mask=band, connectivity=4):
                if value != OBJECT:
                    continue
                outer = np.rint([to_pixels * point for point in geometry["coordinates"][0]]).astype(int)
                (col0, row0), (col1, row1) = outer.min(axis=0), outer.max(axis=0)
                window = Window(col0, row0, col1 - col0, row1 - row0)
                inside = geometry_mask(
                    [geometry],
                    out_shape=(row1 - row0, col1 - col0),
                    transform=window_transform(window, mask_file.transform),
                    invert=True,
                )
                score = None
                if scores is not None:
                    score = float(scores.read(1, window=window)[inside].mean() / 255.0)
                polygons.append((geometry, score, int(inside.sum())))
        finally:
            if scores is not None:
                scores.close()
    return polygons


def write_polygons(path: Path, polygons: list[tuple[dict, float | None, int]], crs: Any, expression: str) -> None:
    """Write ``polygons`` with properties ``expression``, ``score`` and ``pixels`` to ``.geojson`` or ``.gpkg``."""
    check_vector_path(path)
    records = [
        {"expression": expression, "score": None if score is None else round(score, 4), "pixels": pixels}
        for _, score, pixels in polygons
    ]
    if path.suffix.lower() == ".gpkg":
        fiona = require_fiona()
        schema = {"geometry": "Polygon", "properties": {"expression": "str", "score": "float", "pixels": "int"}}
        with atomic_path(path) as tmp:
            crs_wkt = crs.to_wkt() if crs is not None else ""
            with fiona.open(tmp, "w", driver="GPKG", schema=schema, crs_wkt=crs_wkt, layer=path.stem) as sink:
                sink.writerecords(
                    {"geometry": geometry, "properties": record} for (geometry, _, _), record in zip(polygons, records)
                )
        return
    collection: dict[str, Any] = {"type": "FeatureCollection"}
    if crs is not None:  # the source CRS, named as GDAL and QGIS read it (RFC 7946 readers assume WGS 84)
        epsg = crs.to_epsg()
        collection["crs"] = {
            "type": "name",
            "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()},
        }
    collection["features"] = [
        {"type": "Feature", "geometry": geometry, "properties": record}
        for (geometry, _, _), record in zip(polygons, records)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection))
