"""Predict a referring mask over a raster of any size and write it georeferenced (docs/geospatial.md): a large scene
is read window by window and stitched as `S4ECASegmenter` does, each region written once its last window is done."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import private_folder, write_failed
from ..inference.windows import WindowStitcher, check_window_settings, stitch_windows
from ..modeling.processing import _expression_text
from .dependencies import require_rasterio
from .reading import SceneStretch, read_rgb, select_bands, valid_mask
from .vectors import VECTOR_SUFFIXES, mask_polygons, write_polygons
from .writing import NODATA, OBJECT, open_scratch_mask, publish_mask, scratch_profile

ProbabilityFn = Callable[[list[np.ndarray]], Sequence[np.ndarray]]
"""``(h, w, 3)`` float32 RGB windows in [0, 1] -> one ``(h, w)`` probability array per window."""

GDAL_CACHE_MB = 16  # GDAL's block cache; its default (5 % of RAM) would grow with the scene


@dataclass
class RasterPrediction:
    """What `predict_raster` wrote: the mask GeoTIFF ``output`` (uint8: 1 object, 0 background, 255 nodata), the
    polygons file ``vector`` and its ``polygons`` count (when asked for), the scene's ``crs`` (``EPSG:32633`` or WKT;
    `None` if it has none), its ``(height, width)`` ``size``, the ``windows`` predicted (1 for a scene predicted
    whole) and the ``object_pixels``."""

    output: Path
    vector: Path | None
    crs: str | None
    size: tuple[int, int]
    windows: int
    object_pixels: int
    polygons: int | None = None


def segmenter_probabilities(segmenter: Any, expression: str) -> ProbabilityFn:
    """A `ProbabilityFn` for ``expression`` from an `S4ECASegmenter` (each window resized to the training size)."""

    def probabilities(windows: list[np.ndarray]) -> list[np.ndarray]:
        predictions = segmenter.predict(windows, [expression] * len(windows), return_probabilities=True)
        return [prediction.probabilities for prediction in predictions]

    return probabilities


def _settings(predictor: Any, **given: Any) -> dict[str, Any]:
    """Window settings: those given, else the segmenter's, else the segmenter's defaults for a 480 px model."""
    defaults = {"max_side": 1600, "tile_size": 960, "tile_overlap": 0.25, "batch_size": 8}
    settings = {name: getattr(predictor, name, default) if given[name] is None else given[name]
                for name, default in defaults.items()}
    check_window_settings(**settings)
    if hasattr(predictor, "predict") and settings["tile_size"] > predictor.max_side:
        raise ValueError(f"tile_size ({settings['tile_size']}) exceeds the segmenter's max_side "
                         f"({predictor.max_side}): each window must be predicted whole. Lower tile_size or raise "
                         "max_side.")
    return settings


def predict_raster(predictor: Any, path: str | Path, expression: str, output: str | Path, *,
                   vector: str | Path | None = None, bands: Sequence[int] | None = None, threshold: float = 0.5,
                   cog: bool = False, max_side: int | None = None, tile_size: int | None = None,
                   tile_overlap: float | None = None, batch_size: int | None = None,
                   stretch_sample_side: int = 2048) -> RasterPrediction:
    """Predict ``expression`` over the raster at ``path`` (any raster GDAL reads) with ``predictor`` (an
    `S4ECASegmenter` or a `ProbabilityFn`) and write the ``.tif`` mask ``output`` on the same grid; with ``vector``,
    also the object polygons (``.geojson`` or ``.gpkg``) in the scene's CRS. ``bands`` are the 1-based bands read as
    red, green, blue (one: grey); ``cog`` writes a Cloud-Optimized GeoTIFF; the window settings default to the
    segmenter's; scenes larger than ``stretch_sample_side`` are decimated to about that side to compute the 16-bit
    stretch and the float scale. docs/geospatial.md describes every argument and output."""
    rasterio = require_rasterio()
    path, output, vector = _checked_paths(expression, threshold, path, output, vector)
    settings = _settings(predictor, max_side=max_side, tile_size=tile_size, tile_overlap=tile_overlap,
                         batch_size=batch_size)
    probabilities_of = segmenter_probabilities(predictor, expression) if hasattr(predictor, "predict") else predictor

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(path) as source:
        chosen = select_bands(source, bands)
        stretch = SceneStretch.from_dataset(source, chosen, sample_side=stretch_sample_side)
        height, width = source.height, source.width
        whole = max(height, width) <= settings["max_side"]  # one window of the whole scene
        stitcher = WindowStitcher.covering(height, width, max(height, width) if whole else settings["tile_size"],
                                           settings["tile_overlap"])
        warning = (f"A {height} x {width} raster needs {{count}} windows of {stitcher.window_height} x "
                   f"{stitcher.window_width} px; progress is shown. A smaller tile_overlap or a larger tile_size "
                   "needs fewer.")

        with private_folder(output) as scratch:
            mask_tmp, score_tmp = scratch / "mask.tif", scratch / "score.tif"
            try:
                score_sink = rasterio.open(score_tmp, "w", **scratch_profile(source)) if vector else nullcontext()
                with score_sink as score_file, open_scratch_mask(mask_tmp, source) as mask_file:
                    cells = stitch_windows(stitcher, settings["batch_size"], lambda boxes: probabilities_of(
                        [read_rgb(source, chosen, stretch, _window(box)) for box in boxes]), warning)
                    object_pixels = _write_cells(cells, source, chosen, threshold, mask_file, score_file)
            except rasterio.errors.RasterioError as error:  # the scratch rasters: a full disk, a read-only folder
                raise write_failed(output, error) from error
            publish_mask(mask_tmp, output, cog=cog)
            polygons = None
            if vector is not None:
                found = mask_polygons(mask_tmp, score_tmp)
                write_polygons(vector, found, source.crs, expression)
                polygons = len(found)
        crs = source.crs.to_string() if source.crs is not None else None
    return RasterPrediction(output, vector, crs, (height, width), len(stitcher.boxes()), object_pixels, polygons)


def _checked_paths(expression: str, threshold: float, path: str | Path, output: str | Path,
                   vector: str | Path | None) -> tuple[Path, Path, Path | None]:
    """The arguments of `predict_raster` checked before any file is opened; the paths as `Path`."""
    _expression_text(expression, "expression")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    path, output, vector = Path(path), Path(output), Path(vector) if vector is not None else None
    if output.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"output: the mask is written as a GeoTIFF and needs a .tif or .tiff path, got {str(output)!r}.")
    if vector is not None and vector.suffix.lower() not in VECTOR_SUFFIXES:
        raise ValueError(f"vector: polygons are written as .geojson or .gpkg, got {str(vector)!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"path: no raster file at {str(path)!r}.")
    return path, output, vector


def _write_cells(cells: Iterator[tuple[tuple[int, int, int, int], np.ndarray]], source: Any, chosen: Any,
                 threshold: float, mask_file: Any, score_file: Any) -> int:
    """Write each finished cell's mask (nodata where the scene is) and scores; returns the object pixel count."""
    object_pixels = 0
    for cell, blended in cells:
        window = _window(cell)
        values = np.where(valid_mask(source, chosen, window), (blended > threshold) * OBJECT, NODATA).astype(np.uint8)
        object_pixels += int((values == OBJECT).sum())
        mask_file.write(values, 1, window=window)
        if score_file is not None:
            score_file.write(np.rint(np.clip(blended, 0.0, 1.0) * 255.0).astype(np.uint8), 1, window=window)
    return object_pixels


def _window(box: tuple[int, int, int, int]) -> Any:
    from rasterio.windows import Window

    top, left, bottom, right = box
    return Window(left, top, right - left, bottom - top)
