"""`s4eca_peft.geo.predict_raster` with a segmenter and the GeoTIFF options of `s4eca-predict` (single image and batch)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the geo extra (pip install 's4eca-peft[geo]') installs rasterio")
from geo_scenes import UTM, block_scene, read_mask, write_scene  # noqa: E402
from tiny_models import build_tiny_adapter  # noqa: E402

from s4eca_peft.geo import predict_raster  # noqa: E402
from s4eca_peft.inference import S4ECASegmenter  # noqa: E402
from s4eca_peft.predict_command import predict_main  # noqa: E402


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    return build_tiny_adapter(tmp_path_factory.mktemp("geo_cli_adapter") / "tiny")


def predict(adapter_dir: Path, *arguments: str) -> int:
    return predict_main(["--adapter", str(adapter_dir), "--device", "cpu", *arguments])


@pytest.fixture()
def scene(tmp_path) -> Path:
    return write_scene(tmp_path / "scene.tif", block_scene(96, 130, (20, 30, 60, 90), bands=4))


def test_predict_command_equals_the_function(adapter_dir, scene, tmp_path):
    status = predict(adapter_dir, "--image", str(scene), "--expression", "the white tank", "--output",
                     str(tmp_path / "a.tif"), "--bands", "3", "2", "1", "--threshold", "0.4", "--max_side", "64",
                     "--tile_size", "64")  # fmt: skip
    segmenter = S4ECASegmenter.from_pretrained(adapter_dir, device="cpu", max_side=64, tile_size=64)
    function = predict_raster(segmenter, scene, "the white tank", tmp_path / "b.tif", bands=[3, 2, 1], threshold=0.4)
    assert status == 0 and function.windows > 1
    np.testing.assert_array_equal(read_mask(tmp_path / "a.tif")[0], read_mask(function.output)[0])


def test_predict_command_writes_a_geotiff_and_polygons(adapter_dir, scene, tmp_path):
    out = tmp_path / "out"
    status = predict(
        adapter_dir, "--image", str(scene), "--expression", "the white tank", "--output", str(out / "mask.tif"),
        "--vector", str(out / "mask.geojson"), "--bands", "3", "2", "1", "--cog", "--threshold", "0.0",
    )  # fmt: skip
    assert status == 0
    mask, meta = read_mask(out / "mask.tif")
    assert meta["crs"].to_string() == UTM[0] and meta["transform"] == UTM[1] and meta["shape"] == (96, 130)
    assert (mask == 1).all()  # threshold 0: every pixel with a probability above 0
    collection = json.loads((out / "mask.geojson").read_text())
    assert len(collection["features"]) == 1 and collection["features"][0]["properties"]["pixels"] == 96 * 130
    assert sorted(p.name for p in out.iterdir()) == ["mask.geojson", "mask.tif"]  # no PNG overlay for a GeoTIFF


def test_png_output_behaves_as_before(adapter_dir, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", block_scene(40, 50, (5, 5, 20, 20)))
    status = predict(
        adapter_dir, "--image", str(scene), "--expression", "the white tank", "--output", str(tmp_path / "mask.png")
    )
    assert status == 0
    assert (tmp_path / "mask.png").is_file() and (tmp_path / "mask_overlay.png").is_file()


def test_batch_rows_with_geotiff_outputs_and_vectors(adapter_dir, scene, tmp_path):
    queries = tmp_path / "queries.csv"
    with queries.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "expression", "output", "vector"])
        writer.writerow([scene.name, "the white tank", "geo/tank.tif", "geo/tank.gpkg"])
        writer.writerow([scene.name, "the red car", "car.tif", ""])
        writer.writerow([scene.name, "the road", "road.png", ""])
        writer.writerow(["missing.tif", "the road", "missing.tif", ""])
    arguments = ["--batch", str(queries), "--output_dir", str(tmp_path / "out")]
    assert predict(adapter_dir, *arguments) == 1  # the missing image fails, the other rows are written
    out = tmp_path / "out"
    for name in ("geo/tank.tif", "car.tif"):
        assert read_mask(out / name)[1]["crs"].to_string() == UTM[0]
    assert (out / "geo" / "tank.gpkg").is_file() and (out / "road.png").is_file()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [4] and "no raster file" in errors[0]["error"]
    stamp = (out / "car.tif").stat().st_mtime_ns
    assert predict(adapter_dir, *arguments) == 1  # resumable: done rows are skipped
    assert (out / "car.tif").stat().st_mtime_ns == stamp


def test_geotiff_options_without_the_extra_name_it(monkeypatch, adapter_dir, scene, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rasterio" else real(name, *a))
    with pytest.raises(SystemExit) as raised:
        predict_main(
            [
                "--adapter",
                str(adapter_dir),
                "--image",
                str(scene),
                "--expression",
                "x",
                "--output",
                str(tmp_path / "m.tif"),
                "--vector",
                str(tmp_path / "m.geojson"),
            ]
        )
    assert raised.value.code == 2
    assert "s4eca-peft[geo]" in capsys.readouterr().err


def test_geotiff_batch_rows_without_the_extra_name_it(monkeypatch, adapter_dir, scene, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rasterio" else real(name, *a))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"image": scene.name, "expression": "the tank", "output": "tank.tif"}) + "\n")
    assert predict(adapter_dir, "--batch", str(queries), "--output_dir", str(tmp_path / "out")) == 1
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text())["error"]
    assert "s4eca-peft[geo]" in error and not (tmp_path / "out" / "tank.tif").exists()
