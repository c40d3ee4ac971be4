"""Processor: accepted inputs, conversion rule, masks back at the original size, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertTokenizerFast

from s4eca_peft import ReferringSegmentationProcessor
from s4eca_peft.modeling.image_io import load_image


@pytest.fixture(scope="module")
def processor(minilm_path) -> ReferringSegmentationProcessor:
    return ReferringSegmentationProcessor(BertTokenizerFast.from_pretrained(minilm_path), image_size=32)


def test_outputs_and_shapes(processor):
    images = [np.zeros((40, 60, 3), np.uint8), Image.new("RGB", (30, 20), (255, 0, 0))]
    enc = processor(images=images, text=["the red car on the left", "a storage tank"], masks=[np.ones((40, 60))] * 2)
    assert enc["pixel_values"].shape == (2, 3, 32, 32) and enc["pixel_values"].dtype == torch.float32
    assert enc["input_ids"].shape == (2, 20) and enc["attention_mask"].shape == (2, 20)
    assert enc["labels"].shape == (2, 1, 32, 32) and set(enc["labels"].unique().tolist()) == {1.0}
    # red image normalised with ImageNet statistics
    red = enc["pixel_values"][1, :, 5, 5]
    torch.testing.assert_close(red, torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]))


def test_max_length_is_configurable(minilm_path):
    processor = ReferringSegmentationProcessor(BertTokenizerFast.from_pretrained(minilm_path), max_length=8)
    enc = processor(text=["a very long expression with many many words in it that goes on"])
    assert enc["input_ids"].shape == (1, 8)


@pytest.mark.parametrize("size", [(50, 70), (33, 17), (101, 64)])
def test_post_process_returns_original_non_square_sizes(processor, size):
    logits = torch.full((1, 1, 8, 8), -5.0)
    logits[..., :, :4] = 5.0  # left half foreground
    (mask,) = processor.post_process_masks(logits, [size])
    assert mask.shape == size and mask.dtype == torch.bool
    margin = size[1] // 8 + 1  # bilinear transition over one logit cell
    assert mask[:, : size[1] // 2 - margin].all() and not mask[:, size[1] // 2 + margin :].any()


def test_post_process_threshold(processor):
    logits = torch.full((2, 1, 4, 4), 0.0)  # probability 0.5 everywhere
    low, high = processor.post_process_masks(logits, [(4, 4), (6, 6)], threshold=0.4)
    assert low.all() and high.all() and high.shape == (6, 6)
    (none,) = processor.post_process_masks(logits[:1], [(4, 4)], threshold=0.6)
    assert not none.any()


def test_conversion_rule_grayscale_rgba_float_uint16():
    gray = np.full((4, 5), 255, np.uint8)
    assert np.allclose(load_image(gray), 1.0) and load_image(gray).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # alpha is dropped, not composited
    assert np.allclose(load_image(rgba)[..., 0], 1.0)
    assert np.allclose(load_image(np.full((3, 3, 3), 0.25, np.float32)), 0.25)
    assert np.allclose(load_image(np.full((3, 3, 3), 127.5, np.float64)), 0.5)
    ramp = np.arange(100, dtype=np.uint16).reshape(10, 10) * 40  # 12-bit-like values
    converted = load_image(ramp)
    assert converted.min() == 0.0 and converted.max() == 1.0
    assert 0.45 < converted[5, 0, 0] < 0.55  # percentile stretch keeps mid-grey in the middle


def test_paths_and_16_bit_tiff(tmp_path, processor):
    data = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) % 4096).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "tile.tif")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "rgb.png")
    enc = processor(images=[tmp_path / "tile.tif", str(tmp_path / "rgb.png")], text=["a", "b"])
    assert enc["pixel_values"].shape == (2, 3, 32, 32)
    assert torch.isfinite(enc["pixel_values"]).all()
    assert load_image(tmp_path / "tile.tif").max() == 1.0


def test_save_and_load(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    loaded = ReferringSegmentationProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert loaded(text=["the white tank"])["input_ids"].tolist() == processor(text=["the white tank"])["input_ids"].tolist()


# ----------------------------------------------------------------------------- bad input
def test_counts_must_match(processor):
    with pytest.raises(ValueError, match="Got 2 images and 1 expressions"):
        processor(images=[np.zeros((4, 4, 3), np.uint8)] * 2, text=["one"])


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_expression(processor, text):
    with pytest.raises(ValueError, match=r"text\[0\]: the expression is empty"):
        processor(images=[np.zeros((4, 4, 3), np.uint8)], text=[text])


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0)])
def test_zero_side(processor, shape):
    with pytest.raises(ValueError, match=r"images\[0\]: image has a zero side"):
        processor(images=[np.zeros(shape, np.uint8)], text=["x"])


@pytest.mark.parametrize("channels", [2, 5])
def test_channel_count(processor, channels):
    with pytest.raises(ValueError, match=rf"expected 1 \(grayscale\), 3 \(RGB\) or 4 \(RGBA\) channels.*got {channels}"):
        processor(images=[np.zeros((4, 4, channels), np.uint8)], text=["x"])


def test_missing_and_unreadable_paths(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file at"):
        processor(images=[tmp_path / "nope.png"], text=["x"])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image file .*bad.png"):
        processor(images=[tmp_path / "bad.png"], text=["x"])


def test_target_sizes_must_match_batch(processor):
    with pytest.raises(ValueError, match="Got 1 target sizes for a batch of 2"):
        processor.post_process_masks(torch.zeros(2, 1, 4, 4), [(4, 4)])
