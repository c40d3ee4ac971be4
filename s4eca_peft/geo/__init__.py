"""Georeferenced rasters in, georeferenced masks and polygons out, for scenes of any size (the ``geo`` extra;
docs/geospatial.md). rasterio and fiona are imported only when used; missing, they raise an ImportError naming it."""

from ..inference.windows import WindowStitcher, axis_weights, cosine_ramp
from .dependencies import GEO_EXTRA_HINT, has_rasterio, require_fiona, require_rasterio
from .prediction import ProbabilityFn, RasterPrediction, predict_raster, segmenter_probabilities
from .reading import SceneStretch, is_georeferenced_geotiff, read_rgb, select_bands, valid_mask
from .writing import write_mask_geotiff

__all__ = ["GEO_EXTRA_HINT", "ProbabilityFn", "RasterPrediction", "SceneStretch", "WindowStitcher", "axis_weights",
           "cosine_ramp", "has_rasterio", "is_georeferenced_geotiff", "predict_raster", "read_rgb", "require_fiona",
           "require_rasterio", "segmenter_probabilities", "select_bands", "valid_mask", "write_mask_geotiff"]
