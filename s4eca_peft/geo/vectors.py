"""Polygons of a mask raster, with the mean probability inside each, written as GeoJSON or GeoPackage in the
raster's coordinate system."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, write_text_atomic
from .dependencies import require_fiona, require_rasterio
from .writing import OBJECT

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg")
SCORE_BAND_PIXELS = 1 << 22  # pixels burnt per band when summing polygon scores (16 MiB of int32 labels)


def mask_polygons(mask_path: Path, score_path: Path | None) -> list[tuple[dict, float | None, int]]:
    """``(GeoJSON polygon in world coordinates, mean probability, pixel count)`` per 4-connected object region of
    the mask raster; ``score_path`` holds probabilities scaled to 0-255 on the same grid.

    GDAL traces the polygons reading the raster line by line; the polygons are then burnt back, numbered, into bands
    of about `SCORE_BAND_PIXELS` pixels to sum each one's pixels and scores. Memory follows the polygons and one
    band, not the scene."""
    rasterio = require_rasterio()
    from rasterio.features import rasterize, shapes
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    with rasterio.open(mask_path) as mask_file:
        band = rasterio.band(mask_file, 1)  # a band source: GDAL returns world coordinates
        geometries = [geometry for geometry, value in shapes(band, mask=band, connectivity=4) if value == OBJECT]
        if not geometries:
            return []
        d, e, f = tuple(~mask_file.transform)[3:6]  # world -> row
        extents = np.array([_row_extent(geometry, d, e, f) for geometry in geometries])  # (N, 2): first, last + 1
        counts, sums = np.zeros(len(geometries) + 1, np.int64), np.zeros(len(geometries) + 1, np.float64)
        height, width = mask_file.height, mask_file.width
        rows = max(1, SCORE_BAND_PIXELS // width)
        with (rasterio.open(score_path) if score_path is not None else nullcontext()) as scores:
            for top in range(0, height, rows):
                bottom = min(top + rows, height)
                crossing = np.nonzero((extents[:, 0] < bottom) & (extents[:, 1] > top))[0]
                if crossing.size == 0:
                    continue
                window = Window(0, top, width, bottom - top)
                labels = rasterize(
                    ((geometries[i], int(i) + 1) for i in crossing), out_shape=(bottom - top, width), fill=0,
                    transform=window_transform(window, mask_file.transform), dtype="int32",
                ).ravel()  # fmt: skip
                counts += np.bincount(labels, minlength=counts.size)
                if scores is not None:
                    values = scores.read(1, window=window).ravel().astype(np.float64)
                    sums += np.bincount(labels, weights=values, minlength=sums.size)
    means = sums[1:] / np.maximum(counts[1:], 1) / 255.0
    return [(geometry, float(means[i]) if score_path is not None else None, int(counts[i + 1]))
            for i, geometry in enumerate(geometries)]


def _row_extent(geometry: dict, d: float, e: float, f: float) -> tuple[int, int]:
    """First row and last row + 1 of a polygon's outer ring."""
    x, y = np.asarray(geometry["coordinates"][0], dtype=np.float64).T
    rows = d * x + e * y + f
    return int(np.floor(rows.min() + 1e-6)), int(np.ceil(rows.max() - 1e-6))


def write_polygons(path: Path, polygons: list[tuple[dict, float | None, int]], crs: Any, expression: str) -> None:
    """Write ``polygons`` with properties ``expression``, ``score`` and ``pixels`` to ``.gpkg``, else GeoJSON."""
    records = [{"expression": expression, "score": None if score is None else round(score, 4), "pixels": pixels}
               for _, score, pixels in polygons]
    if path.suffix.lower() == ".gpkg":
        fiona = require_fiona()
        schema = {"geometry": "Polygon", "properties": {"expression": "str", "score": "float", "pixels": "int"}}
        crs_wkt = crs.to_wkt() if crs is not None else ""

        def write_gpkg(tmp: Path) -> None:
            with fiona.open(tmp, "w", driver="GPKG", schema=schema, crs_wkt=crs_wkt, layer=path.stem) as sink:
                sink.writerecords({"geometry": geometry, "properties": record}
                                  for (geometry, _, _), record in zip(polygons, records))

        atomic_write(path, write_gpkg)
        return
    collection: dict[str, Any] = {"type": "FeatureCollection"}
    if crs is not None:  # the source CRS, named as GDAL and QGIS read it (RFC 7946 readers assume WGS 84)
        epsg = crs.to_epsg()
        name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
        collection["crs"] = {"type": "name", "properties": {"name": name}}
    collection["features"] = [{"type": "Feature", "geometry": geometry, "properties": record}
                              for (geometry, _, _), record in zip(polygons, records)]
    write_text_atomic(path, json.dumps(collection))
