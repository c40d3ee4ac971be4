"""Dense labels of a synthetic scene, known from its layout: what each pixel is, its colour and its size class (the
pretext targets of the embedded backbone's pretraining; no pixel is labelled as an expression's target)."""

from __future__ import annotations

import numpy as np

from ..data.synthetic import CATEGORIES, COLOURS, SyntheticScene, object_footprint, road_band

IGNORE = -1
"""Label of pixels a head is not scored on (colour and size of ground and roads)."""
REGION_CLASSES = ("ground", "road", *CATEGORIES)
COLOUR_CLASSES = tuple(COLOURS)
SIZE_CLASSES = ("small", "large")


def scene_label_maps(scene: SyntheticScene) -> dict[str, np.ndarray]:
    """``{"region", "colour", "size"}``: ``(H, W)`` int64 maps of a scene.

    ``region`` indexes `REGION_CLASSES` (trees count as ground); ``colour`` and ``size`` index `COLOUR_CLASSES`
    and `SIZE_CLASSES` on object pixels and are `IGNORE` elsewhere.
    """
    n = scene.image.size[0]
    region = np.zeros((n, n), dtype=np.int64)
    colour = np.full((n, n), IGNORE, dtype=np.int64)
    size = np.full((n, n), IGNORE, dtype=np.int64)
    for axis, centre, half in scene.roads:
        band = road_band(centre, half, n)
        region[(band, slice(None)) if axis == "h" else (slice(None), band)] = REGION_CLASSES.index("road")
    for obj in scene.objects:
        index, inside = object_footprint(obj, n)
        region[index][inside] = REGION_CLASSES.index(obj.category)
        colour[index][inside] = COLOUR_CLASSES.index(obj.colour)
        size[index][inside] = SIZE_CLASSES.index(obj.size)
    return {"region": region, "colour": colour, "size": size}
