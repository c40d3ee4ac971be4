"""Georeferenced prediction: GeoTIFFs written with rasterio in, mask GeoTIFFs and polygons out, windows and blending."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the geo extra (pip install 's4eca-peft[geo]') installs rasterio")
from geo_scenes import UTM, WGS84, block_scene, read_mask, write_scene  # noqa: E402
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.transform import xy  # noqa: E402

from s4eca_peft.geo import (  # noqa: E402
    WindowStitcher,
    axis_weights,
    predict_raster,
    require_rasterio,
    write_mask_geotiff,
)
from s4eca_peft.inference import S4ECASegmenter, sliding_window_starts  # noqa: E402
from s4eca_peft.modeling.image_io import load_image, to_float_rgb  # noqa: E402


def brightness(windows: list[np.ndarray]) -> list[np.ndarray]:
    return [window.mean(axis=2) for window in windows]


# ----------------------------------------------------------------------------- grid, CRS, polygons
@pytest.mark.parametrize("crs, transform", [UTM, WGS84], ids=["utm33n", "wgs84"])
def test_mask_keeps_crs_transform_and_size(tmp_path, crs, transform):
    scene = write_scene(tmp_path / "scene.tif", block_scene(300, 420, (100, 50, 160, 300)), crs, transform)
    result = predict_raster(
        brightness, scene, "the bright roof", tmp_path / "out" / "mask.tif", max_side=128, tile_size=128
    )
    mask, meta = read_mask(result.output)
    assert meta["crs"].to_string() == crs and meta["transform"] == transform and meta["shape"] == (300, 420)
    assert mask.dtype == np.uint8 and meta["nodata"] == 255
    assert result.windows > 1 and result.crs == crs
    expected = np.zeros((300, 420), np.uint8)
    expected[100:160, 50:300] = 1
    np.testing.assert_array_equal(mask, expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.tif"]  # no scratch file left behind


@pytest.mark.parametrize("crs, transform", [UTM, WGS84], ids=["utm33n", "wgs84"])
def test_polygons_fall_at_the_objects_world_coordinates(tmp_path, crs, transform):
    box = (40, 70, 90, 200)  # rows 40-90, columns 70-200
    scene = write_scene(tmp_path / "scene.tif", block_scene(150, 260, box), crs, transform)
    result = predict_raster(
        brightness,
        scene,
        "the bright roof",
        tmp_path / "mask.tif",
        vector=tmp_path / "roof.geojson",
        max_side=96,
        tile_size=96,
    )
    collection = json.loads((tmp_path / "roof.geojson").read_text())
    assert result.polygons == 1 and len(collection["features"]) == 1
    assert collection["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}"
    feature = collection["features"][0]
    ring = np.array(feature["geometry"]["coordinates"][0])
    west, north = xy(transform, box[0], box[1], offset="ul")
    east, south = xy(transform, box[2], box[3], offset="ul")
    np.testing.assert_allclose(ring.min(axis=0), [west, south], rtol=0, atol=1e-9 * max(1.0, abs(west)))
    np.testing.assert_allclose(ring.max(axis=0), [east, north], rtol=0, atol=1e-9 * max(1.0, abs(north)))
    expected_score = 230 / 255  # the bright block's probability (scores are stored in 1/255 steps)
    assert feature["properties"] == {
        "expression": "the bright roof",
        "score": pytest.approx(expected_score, abs=1e-4),
        "pixels": 50 * 130,
    }


def test_geopackage_polygons_in_the_source_crs(tmp_path):
    fiona = pytest.importorskip("fiona", reason="the geo extra installs fiona")
    scene = write_scene(tmp_path / "scene.tif", block_scene(120, 120, (10, 10, 30, 50)))
    predict_raster(brightness, scene, "the roof", tmp_path / "mask.tif", vector=tmp_path / "roofs.gpkg")
    with fiona.open(tmp_path / "roofs.gpkg") as layer:
        features = list(layer)
        assert layer.crs.to_epsg() == 32633
    assert len(features) == 1 and features[0].properties["pixels"] == 20 * 40
    ring = np.array(features[0].geometry.coordinates[0])
    west, north = xy(UTM[1], 10, 10, offset="ul")
    east, south = xy(UTM[1], 30, 50, offset="ul")
    np.testing.assert_allclose([*ring.min(axis=0), *ring.max(axis=0)], [west, south, east, north])


def test_cloud_optimized_output(tmp_path):
    scene = write_scene(tmp_path / "scene.tif", block_scene(1100, 700, (500, 100, 700, 600)))
    result = predict_raster(brightness, scene, "the roof", tmp_path / "mask.tif", cog=True)
    with rasterio.open(result.output) as mask:
        assert mask.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert mask.overviews(1) and mask.compression is not None
        assert mask.crs.to_epsg() == 32633 and mask.transform == UTM[1]


def test_a_whole_mask_is_written_on_the_rasters_grid_with_its_nodata(tmp_path):
    data = block_scene(40, 60, (5, 10, 20, 50))
    data[:, :, :8] = 0  # a nodata collar
    scene = write_scene(tmp_path / "scene.tif", data, *WGS84, nodata=0)
    mask = data[0] > 100
    output = write_mask_geotiff(mask, scene, tmp_path / "out" / "mask.tif")
    written, meta = read_mask(output)
    assert meta["crs"].to_string() == WGS84[0] and meta["transform"] == WGS84[1] and meta["nodata"] == 255
    np.testing.assert_array_equal(written, np.where(data[0] == 0, 255, mask.astype(np.uint8)))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.tif"]
    with pytest.raises(ValueError, match=r"mask: shape \(40, 59\) differs from the raster"):
        write_mask_geotiff(mask[:, 1:], scene, tmp_path / "other.tif")
    assert not (tmp_path / "other.tif").exists()


# ----------------------------------------------------------------------------- windows and blending
def test_cosine_ramps_add_up_to_one_where_windows_overlap():
    starts = sliding_window_starts(500, 128, 0.25)
    profiles = axis_weights(starts, 128)
    total = np.zeros(500)
    for start, profile in zip(starts, profiles):
        total[start : start + 128] += profile
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert all(profile.min() > 0 for profile in profiles)
    assert profiles[0][0] == 1.0 and profiles[-1][-1] == 1.0  # no ramp at the scene border


def test_stitcher_holds_about_one_window_and_one_shared_strip():
    height, width, side = 1000, 3000, 128
    tops, lefts = sliding_window_starts(height, side, 0.25), sliding_window_starts(width, side, 0.25)
    stitcher = WindowStitcher(tops, lefts, side, side)
    written = np.zeros((height, width), np.int32)
    largest = 0
    for box in stitcher.boxes():
        for (top, left, bottom, right), values in stitcher.add(box, np.full((side, side), 0.7, np.float32)):
            written[top:bottom, left:right] += 1
            np.testing.assert_allclose(values, 0.7, rtol=1e-6)
        largest = max(largest, stitcher.open_pixels)
    assert (written == 1).all() and stitcher.open_pixels == 0  # every pixel written exactly once, none held
    shared = max(tops[0] + side - tops[1], 0)
    assert largest <= shared * width + side * side  # not the scene: 3 MP here, held at most ~0.1 MP
    assert largest < 0.05 * height * width


def test_windowed_file_path_equals_in_memory_blend(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 230, 310), dtype=np.uint8)
    scene = write_scene(tmp_path / "scene.tif", data)

    def position_aware(windows):  # like a model, the answer depends on where a pixel sits in its window
        out = []
        for window in windows:
            h, w = window.shape[:2]
            ramp = np.add.outer(np.linspace(0, 0.3, h), np.linspace(0, 0.3, w))
            out.append(np.clip(window[..., 0] * 0.7 + ramp, 0, 1).astype(np.float32))
        return out

    result = predict_raster(
        position_aware,
        scene,
        "anything",
        tmp_path / "mask.tif",
        max_side=100,
        tile_size=100,
        tile_overlap=0.3,
        batch_size=3,
    )
    image = to_float_rgb(np.moveaxis(data, 0, -1))  # the whole scene in memory, by the package's image rule
    stitcher = WindowStitcher(sliding_window_starts(230, 100, 0.3), sliding_window_starts(310, 100, 0.3), 100, 100)
    total, weight = np.zeros((230, 310), np.float32), np.zeros((230, 310), np.float32)
    for top, left, bottom, right in stitcher.boxes():
        w = stitcher.weights((top, left, bottom, right))
        total[top:bottom, left:right] += position_aware([image[top:bottom, left:right]])[0] * w
        weight[top:bottom, left:right] += w
    mask, _ = read_mask(result.output)
    assert result.windows == len(stitcher.boxes()) == 12
    np.testing.assert_array_equal(mask, (total / weight > 0.5).astype(np.uint8))


def test_object_across_window_borders_is_one_region(tmp_path):
    height, width = 400, 400
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - 200) ** 2 + (xx - 200) ** 2 < 90**2  # centred on the corner shared by four windows
    data = np.where(disc, 230, 20).astype(np.uint8)[None].repeat(3, axis=0)
    scene = write_scene(tmp_path / "scene.tif", data)

    def edge_shy(windows):  # a model that is unsure within 25 px of its window's edges
        out = []
        for window in windows:
            h, w = window.shape[:2]
            rows = np.minimum(np.arange(h), np.arange(h)[::-1]) + 0.5
            cols = np.minimum(np.arange(w), np.arange(w)[::-1]) + 0.5
            confidence = np.clip(np.minimum.outer(rows, cols) / 25.0, 0.0, 1.0)
            out.append(window.mean(axis=2) * confidence)  # uniform averaging halves it at the other window's edge
        return out

    result = predict_raster(
        edge_shy,
        scene,
        "the round tank",
        tmp_path / "mask.tif",
        vector=tmp_path / "tank.geojson",
        max_side=250,
        tile_size=250,
        tile_overlap=0.25,
    )
    assert result.windows == 4
    features = json.loads((tmp_path / "tank.geojson").read_text())["features"]
    assert len(features) == 1 and features[0]["properties"]["pixels"] == int(disc.sum())
    mask, _ = read_mask(result.output)
    np.testing.assert_array_equal(mask.astype(bool), disc)


# ----------------------------------------------------------------------------- bands, 16 bit, nodata
def test_nodata_stays_nodata_and_is_never_the_object(tmp_path):
    data = np.full((3, 200, 260), 180, np.uint16)
    data[:, :, :60] = 0  # a nodata collar on the left
    data[:, 150:, 200:] = 0  # and a corner
    scene = write_scene(tmp_path / "scene.tif", data, nodata=0)
    seen = []

    def everything(windows):
        seen.extend(windows)
        return [np.ones(window.shape[:2], np.float32) for window in windows]

    result = predict_raster(
        everything,
        scene,
        "everything",
        tmp_path / "mask.tif",
        vector=tmp_path / "all.geojson",
        max_side=120,
        tile_size=120,
    )
    mask, meta = read_mask(result.output)
    nodata = data[0] == 0
    assert meta["nodata"] == 255
    assert (mask[nodata] == 255).all() and (mask[~nodata] == 1).all()
    assert result.object_pixels == int((~nodata).sum())
    features = json.loads((tmp_path / "all.geojson").read_text())["features"]
    assert sum(f["properties"]["pixels"] for f in features) == int((~nodata).sum())
    assert seen[0][:, :60].max() == 0.0  # nodata fed to the model as black


def test_sixteen_bit_four_band_scene_is_stretched_per_band_from_the_whole_scene(tmp_path):
    rng = np.random.default_rng(1)
    data = np.stack([rng.integers(100 * (b + 1), 900 * (b + 1), (180, 240)) for b in range(4)]).astype(np.uint16)
    data[:, :90, :120] += 3000  # a bright quadrant: a per-window stretch would disagree with the scene's
    scene = write_scene(tmp_path / "scene.tif", data)
    windows_seen = []

    def record(windows):
        windows_seen.extend(windows)
        return [np.zeros(window.shape[:2], np.float32) for window in windows]

    result = predict_raster(
        record, scene, "fields", tmp_path / "mask.tif", bands=[4, 2, 1], max_side=100, tile_size=100, tile_overlap=0.0
    )
    expected = to_float_rgb(np.moveaxis(data[[3, 1, 0]], 0, -1))  # the in-memory rule on the chosen bands
    tops, lefts = sliding_window_starts(180, 100, 0.0), sliding_window_starts(240, 100, 0.0)
    boxes = [(top, left) for top in tops for left in lefts]
    assert result.windows == len(windows_seen) == len(boxes)
    for (top, left), window in zip(boxes, windows_seen):
        np.testing.assert_allclose(window, expected[top : top + 100, left : left + 100], atol=1e-6)


def test_rgb_bands_follow_the_colour_interpretation(tmp_path):
    data = np.stack([np.full((64, 64), value, np.uint8) for value in (10, 20, 30, 40)])
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    scene = write_scene(tmp_path / "scene.tif", data, colorinterp=interp)
    seen = []
    predict_raster(lambda ws: seen.extend(ws) or [np.zeros(w.shape[:2]) for w in ws], scene, "x", tmp_path / "m.tif")
    np.testing.assert_allclose(seen[0][0, 0], np.array([30, 20, 10]) / 255.0, atol=1e-6)


def test_non_georeferenced_raster_gives_a_plain_tiff(tmp_path):
    scene = write_scene(tmp_path / "scene.tif", block_scene(50, 60, (5, 5, 20, 30)), crs=None)
    result = predict_raster(brightness, scene, "the roof", tmp_path / "mask.tif")
    mask, meta = read_mask(result.output)
    assert result.crs is None and meta["crs"] is None and int(mask.sum()) == 15 * 25


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bands": [1, 2]}, "bands: give one band"),
        ({"bands": [1, 2, 9]}, r"bands: \[9\] not in 1..3"),
        ({"output": "mask.png"}, "needs a .tif or .tiff path"),
        ({"vector": "roofs.shp"}, "vector: polygons are written as .geojson or .gpkg"),
        ({"expression": "  "}, "expression: the expression is empty"),
        ({"threshold": 1.5}, "threshold must lie in"),
        ({"tile_overlap": 1.0}, "tile_overlap must lie in"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    scene = write_scene(tmp_path / "scene.tif", block_scene(40, 40, (0, 0, 10, 10)))
    arguments = {"path": scene, "expression": "the roof", "output": "mask.tif", **kwargs}
    arguments["output"] = tmp_path / arguments["output"]
    if "vector" in arguments:
        arguments["vector"] = tmp_path / arguments["vector"]
    with pytest.raises(ValueError, match=message):
        predict_raster(brightness, **arguments)
    assert not (tmp_path / "mask.tif").exists()


def test_missing_raster_and_two_band_raster(tmp_path):
    with pytest.raises(FileNotFoundError, match="no raster file"):
        predict_raster(brightness, tmp_path / "nope.tif", "x", tmp_path / "m.tif")
    scene = write_scene(tmp_path / "two.tif", np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"has 2 bands; choose one or three with bands"):
        predict_raster(brightness, scene, "x", tmp_path / "m.tif")


def test_without_rasterio_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"s4eca-peft\[geo\]"):
        require_rasterio()


# ----------------------------------------------------------------------------- with the segmenter
@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory) -> S4ECASegmenter:
    from tiny_models import build_tiny_adapter

    folder = build_tiny_adapter(tmp_path_factory.mktemp("geo_adapter") / "tiny")
    return S4ECASegmenter.from_pretrained(folder, device="cpu", max_side=100, tile_size=64, tile_overlap=0.0)


@pytest.mark.parametrize("size", [(90, 70), (128, 192)], ids=["whole", "windows"])
def test_segmenter_on_a_geotiff_equals_predict_in_memory(tmp_path, tiny_segmenter, size):
    rng = np.random.default_rng(2)
    scene = write_scene(tmp_path / "scene.tif", rng.integers(0, 255, (3, *size), dtype=np.uint8))
    in_memory = tiny_segmenter.predict(load_image(scene), "the white tank", return_probabilities=True)
    threshold = float(np.median(in_memory.probabilities))  # about half the pixels on each side: a telling comparison
    result = predict_raster(tiny_segmenter, scene, "the white tank", tmp_path / "mask.tif", threshold=threshold)
    mask, meta = read_mask(result.output)
    assert result.windows == (1 if size == (90, 70) else 6) and meta["shape"] == size
    assert (in_memory.windows is None) == (size == (90, 70))
    np.testing.assert_array_equal(mask.astype(bool), in_memory.probabilities > threshold)
