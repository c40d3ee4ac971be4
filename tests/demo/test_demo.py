"""The demo without a browser: selection maps from hooks, the pictures, the app's work, flags and the Gradio extra."""

from __future__ import annotations

import builtins
import importlib.util
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_helpers import build_split_adapter, write_geotiff
from fake_hub import write_hub_cache
from huggingface_hub import constants
from peft import get_peft_model
from PIL import Image
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from tiny_models import tiny_tokenizer

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationProcessor
from s4eca_peft.data.synthetic import generate_scene
from s4eca_peft.demo import DemoSession
from s4eca_peft.demo.app import build_demo, require_gradio, short_block_names, write_example_scenes
from s4eca_peft.demo.launch import build_parser, load_segmenter
from s4eca_peft.demo.launch import main as demo_main
from s4eca_peft.inference import S4ECASegmenter, overlay_prediction
from s4eca_peft.tuner import S4ECAConfig

EXPRESSION = "the white tank on the left"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    generate_scene(1000, 96)[0].save(path)
    return path


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, scene) -> Path:
    return build_split_adapter(tmp_path_factory.mktemp("demo_adapter"), scene, EXPRESSION)


@pytest.fixture(scope="module")
def segmenter(adapter_dir) -> S4ECASegmenter:
    return S4ECASegmenter.from_pretrained(adapter_dir, device="cpu")


@pytest.mark.parametrize("switch", ["scale_selection", "spatial_selection"])
def test_a_selection_switched_off_has_no_maps_and_no_picture(switch, tmp_path, scene):
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    peft_config = S4ECAConfig(num_queries=4, text_bottleneck_size=16, text_num_heads=2, vision_bottleneck_size=8,
                              **{switch: False})
    model = get_peft_model(ReferringSegmentationModel(config), peft_config)
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=IMAGE_SIZE, max_length=12)
    session = DemoSession(S4ECASegmenter(model, processor), tmp_path)
    view = session.segment(scene, EXPRESSION)
    assert (view.scale_weights is None) == (switch == "scale_selection")
    assert (view.spatial_gate is None) == (switch == "spatial_selection")


def test_session_shows_and_writes_the_mask_predict_gives(segmenter, scene, tmp_path):
    session = DemoSession(segmenter, tmp_path)
    stale, recent = tmp_path / "masks" / "stale.png", tmp_path / "masks" / "recent.png"
    for path in (stale, recent):
        path.write_bytes(b"")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    view = session.segment(scene, EXPRESSION)
    assert not stale.exists() and recent.exists()  # masks older than ten minutes are removed
    expected = segmenter.predict(scene, EXPRESSION)
    assert 0.2 < expected.mean() < 0.8  # the test adapter splits the scene: a real comparison
    np.testing.assert_array_equal(view.mask, expected)
    with Image.open(view.mask_path) as png:
        assert png.mode == "L" and png.format == "PNG"
        np.testing.assert_array_equal(np.asarray(png), np.where(expected, 255, 0))
    assert view.mask_path.parent == tmp_path / "masks" and view.mask_path.name.startswith("scene_mask_")
    np.testing.assert_array_equal(np.asarray(view.overlay), np.asarray(overlay_prediction(scene, expected)))
    assert view.scale_weights.mode == "RGB" and view.spatial_gate.mode == "RGB"
    assert f"{int(expected.sum())} of {expected.size} pixels" in view.summary
    stricter = session.segment(scene, EXPRESSION, threshold=0.9)
    np.testing.assert_array_equal(stricter.mask, segmenter.predict(scene, EXPRESSION, threshold=0.9))
    assert stricter.mask_path != view.mask_path and view.mask_path.exists()


def test_a_georeferenced_geotiff_is_also_offered_as_a_mask_geotiff_on_its_grid(segmenter, scene, tmp_path):
    import rasterio

    source = write_geotiff(tmp_path / "scene.tif", scene, "EPSG:32633")
    view = DemoSession(segmenter, tmp_path / "work").segment(source, EXPRESSION)
    expected = segmenter.predict(source, EXPRESSION)
    assert 0.2 < expected.mean() < 0.8  # the test adapter splits the scene: a real comparison
    np.testing.assert_array_equal(expected, segmenter.predict(scene, EXPRESSION))  # same pixels as the PNG scene
    np.testing.assert_array_equal(view.mask, expected)
    assert view.geotiff_path == view.mask_path.with_suffix(".tif") and "GeoTIFF" in view.summary
    with rasterio.open(source) as given, rasterio.open(view.geotiff_path) as written:
        assert written.crs == given.crs and written.transform == given.transform
        assert (written.height, written.width, written.count) == (given.height, given.width, 1)
        assert written.dtypes == ("uint8",) and written.nodata == 255
        np.testing.assert_array_equal(written.read(1), expected.astype(np.uint8))  # 1 object, 0 background
    with Image.open(view.mask_path) as png:  # the PNG is offered beside it
        np.testing.assert_array_equal(np.asarray(png), np.where(expected, 255, 0))
    assert sorted(p.suffix for p in (tmp_path / "work" / "masks").iterdir()) == [".png", ".tif"]


@pytest.mark.parametrize("case", ["png", "tiff_without_crs", "geotiff_without_rasterio"])
def test_other_inputs_are_offered_the_png_only(segmenter, scene, tmp_path, monkeypatch, case):
    image = scene
    if case == "tiff_without_crs":
        image = write_geotiff(tmp_path / "plain.tif", scene, None)
    elif case == "geotiff_without_rasterio":
        image = write_geotiff(tmp_path / "scene.tif", scene, "EPSG:32633")
        monkeypatch.setattr("s4eca_peft.geo.reading.has_rasterio", lambda: False)
    view = DemoSession(segmenter, tmp_path / "work").segment(image, EXPRESSION)
    assert view.geotiff_path is None and "GeoTIFF" not in view.summary
    assert [p.suffix for p in (tmp_path / "work" / "masks").iterdir()] == [".png"]
    np.testing.assert_array_equal(view.mask, segmenter.predict(scene, EXPRESSION))


def test_large_images_show_the_first_window(segmenter, tmp_path):
    segmenter_windows = S4ECASegmenter(segmenter.model, segmenter.processor, max_side=80, tile_size=64)
    image = tmp_path / "wide.png"
    generate_scene(3, 128)[0].resize((160, 96)).save(image)
    view = DemoSession(segmenter_windows, tmp_path).segment(image, EXPRESSION)
    np.testing.assert_array_equal(view.mask, segmenter_windows.predict(image, EXPRESSION))
    windows = len(segmenter_windows.window_boxes(96, 160))
    assert windows > 1 and f"Predicted in {windows} sliding windows" in view.summary


@pytest.mark.parametrize("expression", ["", "   "])
def test_empty_expression_is_refused(segmenter, scene, tmp_path, expression):
    with pytest.raises(ValueError, match="Type an expression"):
        DemoSession(segmenter, tmp_path).segment(scene, expression)


def test_example_scenes(tmp_path):
    examples = write_example_scenes(tmp_path)
    assert len(examples) == 3
    for path, expression in examples:
        with Image.open(path) as image:
            assert image.size == (256, 256)
        assert expression.strip()


def test_short_block_names():
    names = ["vision_model.backbone.swin.encoder.layers.0.blocks.1", "vision_model.backbone.swin.encoder.layers.2.blocks.0"]
    assert short_block_names(names) == {names[0]: "layers.0.blocks.1", names[1]: "layers.2.blocks.0"}
    assert short_block_names(["vit.encoder.layer.3"]) == {"vit.encoder.layer.3": "layer.3"}


def test_flags_default_to_loopback_without_sharing(tmp_path, monkeypatch):
    monkeypatch.setattr("s4eca_peft.modeling.packaged.REFERENCE_ADAPTER_PATH", tmp_path / "none")  # none installed
    args = build_parser().parse_args(["--adapter", "outputs/s4eca"])
    assert (args.host, args.port, args.share, args.revision) == ("127.0.0.1", 7860, False, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--adapter", "a", "--port", "70000"])
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_adapter_from_a_hub_id_at_a_revision(adapter_dir, segmenter, scene, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    commit = write_hub_cache(tmp_path, "owner/s4eca-tiny", adapter_dir)
    args = build_parser().parse_args(["--adapter", "owner/s4eca-tiny", "--revision", commit, "--device", "cpu",
                                      "--cache_dir", str(tmp_path)])
    np.testing.assert_array_equal(load_segmenter(args).predict(scene, EXPRESSION), segmenter.predict(scene, EXPRESSION))
    args.revision = "0" * 40
    with pytest.raises(ValueError, match="owner/s4eca-tiny"):
        load_segmenter(args)


def test_missing_gradio_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def without_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_gradio)
    with pytest.raises(ImportError, match=r"s4eca-peft\[demo\]"):
        require_gradio()


def test_space_layout(tmp_path):
    folder = Path(__file__).resolve().parents[2] / "examples" / "space"
    spec = importlib.util.spec_from_file_location("space_app", folder / "app.py")
    space_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(space_app)
    args = build_parser().parse_args(space_app.space_arguments({}))
    assert (args.adapter, args.host, args.port, args.revision) == (str(folder / "adapter"), "0.0.0.0", 7860, None)
    args = build_parser().parse_args(space_app.space_arguments({"S4ECA_ADAPTER": "o/a", "S4ECA_ADAPTER_REVISION": "v1"}))
    assert (args.adapter, args.revision) == ("o/a", "v1")
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert "s4eca-peft[demo]" in requirements
    front_matter = (folder / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter


def test_command_line_errors_end_with_a_message(tmp_path, capsys):
    missing = tmp_path / "no_adapter"
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--adapter", str(missing), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert re.search(r"^s4eca-demo: .*no_adapter.* is not an adapter folder", capsys.readouterr().err)
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--adapter", "a", "--port", "http"])
    assert exit_info.value.code == 2 and "--port" in capsys.readouterr().err


def test_uploads_are_bounded_before_they_are_stored(monkeypatch):
    from s4eca_peft.demo import app, launch

    launched = {}

    class Blocks:
        def launch(self, **kwargs):
            launched.update(kwargs)

    monkeypatch.setattr(launch, "load_segmenter", lambda args: None)
    monkeypatch.setattr(app, "build_demo", lambda segmenter, workdir, title: Blocks())
    launch.serve(build_parser().parse_args(["--adapter", "unused"]))
    assert launched["max_file_size"] == launch.MAX_UPLOAD_BYTES == 50 * 1024 * 1024


def test_uploads_are_removed_after_ten_minutes_and_a_non_image_at_once_naming_the_formats(segmenter, tmp_path):
    gr = require_gradio()
    from gradio.data_classes import FileData

    demo = build_demo(segmenter, tmp_path)
    assert demo.delete_cache == (60, 600)  # Gradio removes uploads older than ten minutes, checked every minute
    image = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "s4eca-image")
    uploaded, elsewhere = tmp_path / "cache" / "notes.txt", tmp_path / "notes.txt"
    uploaded.parent.mkdir()
    for text in (uploaded, elsewhere):
        text.write_text("not an image")
    image.GRADIO_CACHE = str(uploaded.parent)
    for text in (uploaded, elsewhere):
        with pytest.raises(gr.Error, match=r"notes.txt is not an image the app can read: upload a PNG, JPEG"):
            image.preprocess(FileData(path=str(text), orig_name="notes.txt"))
    assert not uploaded.exists() and elsewhere.exists()  # a refused upload is removed at once, nothing else is
    scene = write_example_scenes(tmp_path / "scenes")[0][0]
    assert image.preprocess(FileData(path=scene, orig_name="scene.png")) == scene
