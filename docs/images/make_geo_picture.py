"""Draw `docs/images/geo_mask_over_scene.png`: a mask GeoTIFF and its polygons over their georeferenced scene.

    python docs/images/make_geo_picture.py                            # trains first (CPU: about 10-15 minutes)
    python docs/images/make_geo_picture.py --adapter outputs/s4eca    # an adapter folder you already have

The adapter is the one `make_inference_pictures.py` trains (small random Swin at 128 px + MiniLM, 300 steps on the
embedded synthetic scenes). The scene is a held-out synthetic scene at 512 px (seed 1000, never seen in training),
written as a GeoTIFF in UTM zone 33N (EPSG:32633) with 0.3 m pixels. `s4eca_peft.geo.predict_raster` writes the
mask GeoTIFF and the GeoJSON polygons; the picture reads both back and draws them in map coordinates: the mask
tinted red, each polygon outlined in red, the true object outlined in yellow.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SEED, SIDE, PIXEL_M = 1000, 512, 0.3
ORIGIN = (455_000.0, 5_010_000.0)  # west, north (m), UTM zone 33N


def write_scene(path: Path, image: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    height, width = image.shape[:2]
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M),
        photometric="RGB",
    )
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(np.moveaxis(np.asarray(image), -1, 0))


def draw(scene: Path, mask_path: Path, polygons_path: Path, truth: np.ndarray, expression: str, output: Path) -> None:
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
    figure, axis = plt.subplots(figsize=(6.4, 6.4), dpi=100)
    axis.imshow(rgb, extent=extent)
    tint = np.zeros((*mask.shape, 4), np.float32)
    tint[mask] = (1.0, 0.12, 0.12, 0.45)
    axis.imshow(tint, extent=extent)
    for feature in features:  # polygons in map coordinates, straight from the GeoJSON
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        axis.plot(ring[:, 0], ring[:, 1], color=(1.0, 0.0, 0.0), linewidth=1.2)
    axis.contour(np.flipud(truth.astype(float)), levels=[0.5], colors=[(1.0, 0.9, 0.0)], linewidths=1.2, extent=extent)
    scores = ", ".join(f"{f['properties']['score']:.2f}" for f in features) or "none"
    axis.set_title(
        f'"{expression}"\nmask GeoTIFF + {len(features)} polygon(s) (mean score {scores}); truth in yellow', fontsize=9
    )
    axis.set_xlabel(f"easting (m, {crs})", fontsize=8)
    axis.set_ylabel("northing (m)", fontsize=8)
    axis.ticklabel_format(useOffset=False, style="plain")
    axis.tick_params(labelsize=7)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".tmp-{output.name}")
    figure.savefig(tmp, format="png")
    plt.close(figure)
    tmp.replace(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=None, help="Adapter folder (default: train one first).")
    parser.add_argument("--steps", type=int, default=300, help="Training steps when no --adapter is given.")
    parser.add_argument("--output", default=str(HERE / "geo_mask_over_scene.png"))
    args = parser.parse_args()

    from make_inference_pictures import train

    from s4eca_peft.data.synthetic import generate_scene
    from s4eca_peft.geo import predict_raster
    from s4eca_peft.inference import S4ECASegmenter

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        adapter = Path(args.adapter) if args.adapter else train(folder / "adapter", args.steps)
        segmenter = S4ECASegmenter.from_pretrained(adapter, device="cpu")
        image, truth, expression, _ = generate_scene(SEED, image_size=SIDE)
        write_scene(folder / "scene.tif", np.asarray(image))
        result = predict_raster(
            segmenter, folder / "scene.tif", expression, folder / "mask.tif", vector=folder / "mask.geojson"
        )
        print(result)
        draw(folder / "scene.tif", result.output, result.vector, np.asarray(truth), expression, Path(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
