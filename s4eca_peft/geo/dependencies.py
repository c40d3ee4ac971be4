"""Optional dependencies of the geospatial I/O, imported only when used."""

from __future__ import annotations

import importlib.util
from types import ModuleType

GEO_EXTRA_HINT = "install the geo extra: pip install 's4eca-peft[geo]'"


def has_rasterio() -> bool:
    """Whether rasterio is installed (without importing it)."""
    return importlib.util.find_spec("rasterio") is not None


def require_rasterio() -> ModuleType:
    """``rasterio`` with the modules the package uses, or an ImportError naming the ``geo`` extra."""
    try:
        import rasterio
        import rasterio.features
        import rasterio.shutil
        import rasterio.windows
    except ImportError as error:
        raise ImportError(f"GeoTIFF input and output need rasterio; {GEO_EXTRA_HINT}.") from error
    return rasterio


def require_fiona() -> ModuleType:
    """``fiona`` (GeoPackage writing), or an ImportError naming the ``geo`` extra."""
    try:
        import fiona
    except ImportError as error:
        raise ImportError(f"Writing GeoPackage (.gpkg) polygons needs fiona; {GEO_EXTRA_HINT}.") from error
    return fiona
