"""Draw `docs/images/geo_mask_over_scene.png`: a mask GeoTIFF and its polygons over their georeferenced scene.

    python docs/images/make_geo_picture.py                            # colour-rule stand-in for the model (seconds)
    python docs/images/make_geo_picture.py --adapter outputs/s4eca --expression "the blue pool"

The scene is a 3 x 3 mosaic of held-out synthetic scenes of 512 px (seeds 1000-1008, never seen in training): a
1536 px GeoTIFF in UTM zone 33N (EPSG:32633) with 0.3 m pixels. `s4eca_peft.geo.predict_raster` predicts it in
overlapping 640 px windows (dashed) and writes the mask GeoTIFF and the GeoJSON polygons; the picture reads both
back and draws them in map coordinates: the mask tinted red, each polygon outlined in red.

Without ``--adapter`` the probabilities come from a colour rule (how much bluer than red and green a pixel is), a
stand-in that shows the georeferenced pipeline without a trained model; with ``--adapter`` they come from that
S4ECA segmenter for ``--expression``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from s4eca_peft.inference.visualization import save_image_atomic

HERE = Path(__file__).resolve().parent
SEED, SIDE, GRID, PIXEL_M = 1000, 512, 3, 0.3
ORIGIN = (455_000.0, 5_010_000.0)  # west, north (m), UTM zone 33N
WINDOWS = {"max_side": 1024, "tile_size": 640, "tile_overlap": 0.25}


def mosaic() -> np.ndarray:
    """``GRID x GRID`` held-out synthetic scenes side by side: ``(GRID*SIDE, GRID*SIDE, 3)`` uint8."""
    from s4eca_peft.data.synthetic import generate_scene

    tiles = [np.asarray(generate_scene(SEED + i, image_size=SIDE)[0]) for i in range(GRID * GRID)]
    return np.concatenate([np.concatenate(tiles[r * GRID : (r + 1) * GRID], axis=1) for r in range(GRID)], axis=0)


def write_scene(path: Path, image: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    height, width = image.shape[:2]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(*ORIGIN, PIXEL_M, PIXEL_M), "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(np.moveaxis(image, -1, 0))


def blueness(windows: list[np.ndarray]) -> list[np.ndarray]:
    """Stand-in probability: high where blue exceeds red and green by a clear margin."""
    return [1.0 / (1.0 + np.exp(-25.0 * (w[..., 2] - np.maximum(w[..., 0], w[..., 1]) - 0.25))) for w in windows]


def draw(scene: Path, mask_path: Path, polygons_path: Path, boxes: list, title: str, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    with rasterio.open(scene) as source:
        rgb = np.moveaxis(source.read(), 0, -1)
        west, south, east, north = source.bounds
        crs = source.crs.to_string()
    with rasterio.open(mask_path) as mask_file:
        mask = mask_file.read(1) == 1
    features = json.loads(polygons_path.read_text())["features"]
    extent = (west, east, south, north)
    figure, axis = plt.subplots(figsize=(7.2, 7.2), dpi=100)
    axis.imshow(rgb, extent=extent)
    tint = np.zeros((*mask.shape, 4), np.float32)
    tint[mask] = (1.0, 0.12, 0.12, 0.5)
    axis.imshow(tint, extent=extent)
    for top, left, bottom, right in boxes:  # the prediction windows, in map coordinates
        x0, x1 = west + left * PIXEL_M, west + right * PIXEL_M
        y0, y1 = north - bottom * PIXEL_M, north - top * PIXEL_M
        axis.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="white", linewidth=0.6, linestyle="--")
    for feature in features:  # polygons in map coordinates, straight from the GeoJSON
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        axis.plot(ring[:, 0], ring[:, 1], color=(1.0, 0.0, 0.0), linewidth=1.0)
    axis.set_title(f"{title}\nmask GeoTIFF (red tint) + {len(features)} GeoJSON polygons (red lines); windows dashed",
                   fontsize=9)
    axis.set_xlabel(f"easting (m, {crs})", fontsize=8)
    axis.set_ylabel("northing (m)", fontsize=8)
    axis.ticklabel_format(useOffset=False, style="plain")
    axis.tick_params(labelsize=7)
    figure.tight_layout()
    figure.canvas.draw()
    picture = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])
    plt.close(figure)
    save_image_atomic(picture.quantize(colors=256), output)  # a palette PNG keeps the file small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=None, help="S4ECA adapter folder (default: the colour-rule stand-in).")
    parser.add_argument("--expression", default="the blue pool", help="Expression for --adapter.")
    parser.add_argument("--output", default=str(HERE / "geo_mask_over_scene.png"))
    args = parser.parse_args()

    from s4eca_peft.geo import WindowStitcher, predict_raster
    from s4eca_peft.inference import S4ECASegmenter, sliding_window_starts

    if args.adapter:
        predictor, title = S4ECASegmenter.from_pretrained(args.adapter, device="cpu"), f'"{args.expression}"'
    else:
        predictor, title = blueness, "colour rule standing in for the model: blue objects"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = mosaic()
        write_scene(folder / "scene.tif", image)
        result = predict_raster(predictor, folder / "scene.tif", args.expression, folder / "mask.tif",
                                vector=folder / "mask.geojson", **WINDOWS)
        print(result)
        side = GRID * SIDE
        starts = sliding_window_starts(side, WINDOWS["tile_size"], WINDOWS["tile_overlap"])
        boxes = WindowStitcher(starts, starts, WINDOWS["tile_size"], WINDOWS["tile_size"]).boxes()
        draw(folder / "scene.tif", result.output, result.vector, boxes, title, Path(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
