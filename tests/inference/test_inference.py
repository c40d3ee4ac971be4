"""S4ECASegmenter: masks at the original size, input pairing, options, and sliding windows for large images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from tiny_models import build_tiny_adapter, tiny_tokenizer

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationProcessor
from s4eca_peft.inference import (
    ReferringPrediction,
    S4ECASegmenter,
    WindowStitcher,
    overlay_prediction,
    sliding_window_starts,
)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    return build_tiny_adapter(tmp_path_factory.mktemp("adapter") / "tiny")


@pytest.fixture(scope="module")
def segmenter(adapter_dir) -> S4ECASegmenter:
    return S4ECASegmenter.from_pretrained(adapter_dir, device="cpu")


def test_loads_from_a_local_folder(segmenter):
    assert segmenter.image_size == IMAGE_SIZE
    assert segmenter.metadata["note"] == "tiny random adapter for tests"
    assert not segmenter.model.training
    assert segmenter.device.type == "cpu" and segmenter.dtype == torch.float32
    assert segmenter.tile_size == 2 * IMAGE_SIZE


@pytest.mark.parametrize("size", [(50, 70), (33, 17), (101, 64), (20, 90)])
def test_one_image_one_expression_gives_one_mask_at_the_original_size(segmenter, size):
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    mask = segmenter.predict(image, "the white tank")
    assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == size


def test_lists_of_pil_numpy_and_paths(segmenter, tmp_path):
    Image.fromarray(np.full((40, 96), 200, np.uint8)).save(tmp_path / "gray.png")
    images = [Image.new("RGB", (80, 30), (10, 90, 200)), np.zeros((45, 61, 4), np.uint8), tmp_path / "gray.png"]
    masks = segmenter.predict(images, ["the car", "a pool on the left", "the road"])
    assert isinstance(masks, list) and [m.shape for m in masks] == [(30, 80), (45, 61), (40, 96)]


def test_matches_processor_model_post_processing(segmenter):
    image = np.random.default_rng(1).random((48, 80, 3), dtype=np.float32)
    inputs = segmenter.processor(images=[image], text=["the red car"])
    with torch.no_grad():
        logits = segmenter.model(**inputs).logits
    (expected,) = segmenter.processor.post_process_probabilities(logits, [(48, 80)])
    prediction = segmenter.predict(image, "the red car", threshold=0.3, return_probabilities=True)
    np.testing.assert_allclose(prediction.probabilities, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(prediction.mask, expected.numpy() > 0.3)


def test_broadcast_and_batching(segmenter):
    image = np.random.default_rng(2).random((36, 52, 3), dtype=np.float32)
    expressions = ["the car", "the tank", "the road"]  # batches of 2 and 1
    segmenter.batch_size = 2
    try:
        one_image_many = segmenter.predict(image, expressions, return_probabilities=True)
    finally:
        segmenter.batch_size = 8
    alone = [segmenter.predict(image, text, return_probabilities=True) for text in expressions]
    for batched, single in zip(one_image_many, alone):
        np.testing.assert_allclose(batched.probabilities, single.probabilities, atol=1e-5)
    many_images_one = segmenter.predict([image, image[:20]], "the car")
    assert [m.shape for m in many_images_one] == [(36, 52), (20, 52)]


def test_selection_maps(segmenter):
    image = np.zeros((40, 56, 3), np.uint8)
    first, second = segmenter.predict([image, image], ["the car", "the road"], return_selection_maps=True)
    assert isinstance(first, ReferringPrediction) and first.probabilities is None and first.windows is None
    assert first.selection_maps and set(first.selection_maps) == set(second.selection_maps)
    for maps in first.selection_maps.values():
        assert maps["scale_weights"].ndim == 2  # (n_branches, r): softmax over branches
        np.testing.assert_allclose(maps["scale_weights"].sum(0), 1.0, atol=1e-5)
        assert maps["spatial_gate"].shape[0] == 1 and maps["spatial_gate"].ndim == 3
    # recording is switched off again after the call
    assert segmenter.model.base_model.get_selection_maps() == {}


def test_bfloat16(adapter_dir):
    segmenter = S4ECASegmenter.from_pretrained(adapter_dir, device="cpu", dtype="bfloat16")
    assert segmenter.dtype == torch.bfloat16
    prediction = segmenter.predict(np.zeros((30, 50, 3), np.uint8), "the car", return_probabilities=True)
    assert prediction.mask.shape == (30, 50) and prediction.probabilities.dtype == np.float32


def test_overlay(segmenter):
    image = np.full((30, 40, 3), 100, np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    overlay = np.asarray(overlay_prediction(image, mask))
    assert overlay.shape == (30, 40, 3)
    assert (overlay[~mask] == 100).all() and not (overlay[12, 20] == 100).all()
    with pytest.raises(ValueError, match="mask shape"):
        overlay_prediction(image, mask[:10])


# ----------------------------------------------------------------------------- large images
@pytest.mark.parametrize("length, window", [(2000, 512), (1500, 512), (512, 512), (300, 512), (1000, 999)])
def test_sliding_window_starts_cover_with_overlap(length, window):
    starts = sliding_window_starts(length, window, overlap=0.25)
    side = min(window, length)
    assert starts[0] == 0 and starts[-1] + side == length
    for a, b in zip(starts, starts[1:]):
        assert side * 0.75 >= b - a > 0  # consecutive windows overlap by at least a quarter


def test_large_image_is_predicted_with_sliding_windows(segmenter):
    height, width = 1500, 2000  # a 2000 x 1500 tile, above max_side=1600
    image = np.random.default_rng(3).integers(0, 255, (height, width, 3), dtype=np.uint8)
    seen: list[tuple[int, ...]] = []
    hook = segmenter.model.get_base_model().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["pixel_values"].shape)), with_kwargs=True
    )
    # 1024 px windows, 4 per forward pass (the default, 128 px windows for this 64 px model, needs 336 windows)
    segmenter.tile_size, segmenter.batch_size = 16 * IMAGE_SIZE, 4
    try:
        boxes = segmenter.window_boxes(height, width)
        prediction = segmenter.predict(
            image, "the large building", return_probabilities=True, return_selection_maps=True
        )
    finally:
        segmenter.tile_size, segmenter.batch_size = 2 * IMAGE_SIZE, 8
        hook.remove()
    # 3 columns x 2 rows, overlapping by >= 25 %: left edges 0, 488, 976 and top edges 0, 476
    assert boxes == [(top, left, top + 1024, left + 1024) for top in (0, 476) for left in (0, 488, 976)]
    assert prediction.windows == boxes
    assert prediction.mask.shape == (height, width) and prediction.probabilities.shape == (height, width)
    # every forward saw at most batch_size inputs at the training size, and every window went through once
    assert seen == [(4, 3, IMAGE_SIZE, IMAGE_SIZE), (2, 3, IMAGE_SIZE, IMAGE_SIZE)]
    assert len(prediction.selection_maps) == len(boxes)  # one dict of maps per window
    # where only the first window covers, the probabilities are that window's own prediction
    top, left, bottom, right = boxes[0]
    alone = segmenter.predict(image[top:bottom, left:right], "the large building", return_probabilities=True)
    np.testing.assert_allclose(prediction.probabilities[:400, :400], alone.probabilities[:400, :400], atol=1e-5)
    # where two windows overlap, the blend of both by the stitcher's cosine-ramp weights (which add up to 1 there)
    right_neighbour = segmenter.predict(image[0:1024, 488:1512], "the large building", return_probabilities=True)
    stitcher = WindowStitcher([0, 476], [0, 488, 976], 1024, 1024)
    weight_left, weight_right = stitcher.weights(boxes[0])[:400, 600:900], stitcher.weights(boxes[1])[:400, 112:412]
    np.testing.assert_allclose(weight_left + weight_right, 1.0, atol=1e-6)
    assert (np.diff(weight_left[0]) < 0).all()  # the left window fades out towards its right edge, not a plain mean
    both = weight_left * alone.probabilities[:400, 600:900] + weight_right * right_neighbour.probabilities[:400, 112:412]
    np.testing.assert_allclose(prediction.probabilities[:400, 600:900], both, atol=1e-5)


def test_small_images_are_not_windowed(segmenter):
    assert not segmenter.needs_windows(1600, 1200)
    assert segmenter.needs_windows(1601, 10)
    # default: 128 px windows (twice the 64 px training size) with a 96 px stride -> 21 columns x 16 rows
    assert len(segmenter.window_boxes(1500, 2000)) == 21 * 16


# ----------------------------------------------------------------------------- bad input
def test_bad_predict_input(segmenter):
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="Got 2 images and 3 expressions"):
        segmenter.predict([image, image], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"expressions\[1\]: the expression is empty"):
        segmenter.predict([image, image], ["the car", "  "])
    with pytest.raises(ValueError, match="threshold"):
        segmenter.predict(image, "the car", threshold=1.5)
    with pytest.raises(FileNotFoundError, match="no image file"):
        segmenter.predict("/nonexistent/tile.png", "the car")


def test_selection_maps_of_a_model_without_s4eca_adapters_are_refused_by_name():
    config = ReferringSegmentationConfig(vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"),
                                         decoder_dim=16)
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=IMAGE_SIZE, max_length=12)
    segmenter = S4ECASegmenter(ReferringSegmentationModel(config), processor)
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    assert segmenter.predict(image, "the tank").shape == (IMAGE_SIZE, IMAGE_SIZE)  # plain masks need no adapters
    with pytest.raises(NotImplementedError, match="needs an S4ECA model"):
        segmenter.predict(image, "the tank", return_selection_maps=True)
