"""Augmentations that keep the expression true, and the collate into model inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from s4eca_peft import ReferringSegmentationProcessor
from s4eca_peft.data import (
    PhotometricJitter,
    ReferringCollator,
    TrainTransform,
    generate_scene_with_layout,
    horizontal_flip,
    make_synthetic_dataset,
    swap_left_right,
)


@pytest.mark.parametrize(
    "text, mirrored",
    [
        ("the car on the left", "the car on the right"),
        ("Left building, right tank", "Right building, left tank"),
        ("the LEFTMOST tank", "the RIGHTMOST tank"),
        ("the rightmost pool west of the road", "the leftmost pool east of the road"),
        ("the north-west corner and the southeast one", "the north-east corner and the southwest one"),
        ("the western roof, upper-left", "the eastern roof, upper-right"),
        ("leftover bright eastside cars", "leftover bright eastside cars"),  # not whole words: untouched
        ("the large tank at the top", "the large tank at the top"),
    ],
)
def test_swap_left_right(text, mirrored):
    assert swap_left_right(text) == mirrored
    assert swap_left_right(mirrored) == text


def test_flip_keeps_expression_true_on_a_scene():
    """Mirroring a "leftmost"-type scene: the rewritten expression still names the masked object."""
    scene = next(
        s
        for i in range(200)
        if (s := generate_scene_with_layout((3, i), 128)).family == "position" and "left" in s.expression
    )
    image = np.asarray(scene.image, dtype=np.float32) / 255
    flipped, mask, expression = horizontal_flip(image, scene.mask, scene.expression)
    assert "right" in expression and "left" not in expression
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_array_equal(mask, scene.mask[:, ::-1])
    # the flipped target is now right of every peer
    target = scene.objects[scene.target]
    peers = [o for o in scene.objects if o.category == target.category and o is not target]
    columns = np.nonzero(mask.any(axis=0))[0]
    assert all(columns.mean() > 128 - peer.cx for peer in peers)


def test_photometric_jitter_is_seeded_and_bounded():
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    jitter = PhotometricJitter(0.3, 0.3, 0.3)
    a = jitter(image, np.random.default_rng(1))
    b = jitter(image, np.random.default_rng(1))
    c = jitter(image, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, image)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_allclose(PhotometricJitter(0, 0, 0)(image, np.random.default_rng(3)), image, atol=1e-6)
    with pytest.raises(ValueError, match="brightness"):
        PhotometricJitter(brightness=1.5)


def test_photometric_jitter_matches_its_definition_on_pil_and_arrays():
    """One affine map = brightness, then saturation (blend with luma), then contrast (blend with mean luma)."""
    pixels = np.random.default_rng(4).integers(40, 200, (32, 32, 3), dtype=np.uint8)
    jitter = PhotometricJitter(0.4, 0.4, 0.4)
    b, c, s = np.random.default_rng(5).uniform(0.6, 1.4, 3)
    x = pixels / 255.0 * b
    grey = x @ np.array([0.299, 0.587, 0.114])
    x = (x - grey[..., None]) * s + grey[..., None]
    expected = np.clip((x - grey.mean()) * c + grey.mean(), 0, 1)
    from_array = jitter(pixels / np.float32(255), np.random.default_rng(5))
    from_pil = jitter(Image.fromarray(pixels), np.random.default_rng(5))
    assert isinstance(from_pil, Image.Image) and from_pil.mode == "RGB"
    np.testing.assert_allclose(from_array, expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(from_pil) / 255.0, expected, atol=1.5 / 255)


def test_train_transform_flip_probability():
    sample = {"image": np.zeros((8, 10, 3), np.uint8), "mask": np.eye(8, 10, dtype=bool), "expression": "the left car"}
    sample["image"][:, :3] = 255
    always = TrainTransform(flip_prob=1.0, jitter=False)(sample)
    never = TrainTransform(flip_prob=0.0, jitter=False)(sample)
    assert always["expression"] == "the right car" and never["expression"] == "the left car"
    np.testing.assert_array_equal(always["mask"], sample["mask"][:, ::-1])
    assert always["image"][:, -3:].min() == 1.0 and always["image"][:, :3].max() == 0.0
    np.testing.assert_array_equal(never["mask"], sample["mask"])
    category = dict(sample, category_mask=np.tri(8, 10, dtype=bool))  # flipped with the image and the mask
    np.testing.assert_array_equal(TrainTransform(flip_prob=1.0, jitter=False)(category)["category_mask"],
                                  category["category_mask"][:, ::-1])
    np.testing.assert_array_equal(TrainTransform(flip_prob=0.0, jitter=False)(category)["category_mask"],
                                  category["category_mask"])
    pil = TrainTransform(flip_prob=1.0, jitter=False)(dict(sample, image=Image.fromarray(sample["image"])))
    assert isinstance(pil["image"], Image.Image)
    np.testing.assert_array_equal(np.asarray(pil["image"]), sample["image"][:, ::-1])
    flips = [TrainTransform(seed=s, jitter=False)(sample)["expression"] == "the right car" for s in range(40)]
    assert 5 < sum(flips) < 35
    again = [TrainTransform(seed=s, jitter=False)(sample)["expression"] == "the right car" for s in range(40)]
    assert flips == again


@pytest.fixture(scope="module")
def processor(minilm_path):
    return ReferringSegmentationProcessor(AutoTokenizer.from_pretrained(minilm_path), image_size=64, max_length=12)


@pytest.fixture(scope="module")
def samples():
    dataset = make_synthetic_dataset(4, image_size=96, seed=5)
    return [dataset[i] for i in range(4)]


def test_eval_collate_shapes_and_values(processor, samples):
    batch = ReferringCollator(processor)(samples)
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, 12)
    assert batch["labels"].shape == (4, 1, 64, 64) and batch["labels"].dtype == torch.float32
    assert set(batch["labels"].unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(batch["labels"], processor.preprocess_masks([s["mask"] for s in samples]))
    torch.testing.assert_close(
        batch["pixel_values"], processor(images=[s["image"] for s in samples], text=["x"] * 4)["pixel_values"]
    )
    assert batch["sample_ids"] == [f"synthetic-5-{i}" for i in range(4)]
    assert batch["image_ids"] == batch["sample_ids"]
    assert batch["original_sizes"] == [(96, 96)] * 4
    assert batch["expressions"] == [s["expression"] for s in samples]
    decoded = processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert decoded.split()[:2] == samples[0]["expression"].lower().split()[:2]


def test_training_scenes_collate_the_masks_of_every_object_of_the_named_category(processor):
    from s4eca_peft.data import SyntheticSceneStream

    scenes = [SyntheticSceneStream(image_size=96, seed=5, length=4)[i] for i in range(4)]
    batch = ReferringCollator(processor)(scenes)
    torch.testing.assert_close(batch["category_labels"],
                               processor.preprocess_masks([s["category_mask"] for s in scenes]))
    assert (batch["category_labels"] >= batch["labels"]).all()  # the target is one of them
    assert (batch["category_labels"].sum(dim=(1, 2, 3)) > batch["labels"].sum(dim=(1, 2, 3))).all()
    assert "category_labels" not in ReferringCollator(processor)([*scenes[:3], {**scenes[3], "category_mask": None}])
    # the fixed val/test sets carry them too (stored as RLE, decoded when read)
    fixed = make_synthetic_dataset(4, image_size=96, seed=5)
    batch = ReferringCollator(processor)([fixed[i] for i in range(4)])
    assert (batch["category_labels"] >= batch["labels"]).all()
    assert (batch["category_labels"].sum(dim=(1, 2, 3)) > batch["labels"].sum(dim=(1, 2, 3))).all()


def test_training_batches_are_augmented_by_the_sample_key(processor, samples):
    from s4eca_peft.data.loaders import KeyedTrainingSet

    collate = ReferringCollator(processor)
    plain = collate(samples)
    size_96 = ReferringSegmentationProcessor(processor.tokenizer, image_size=96, max_length=12)
    flip_all = KeyedTrainingSet(samples, TrainTransform(flip_prob=1.0, jitter=False), seed=0)
    flipped = ReferringCollator(size_96)([flip_all[k] for k in range(4)])
    unflipped = ReferringCollator(size_96)(samples)
    torch.testing.assert_close(flipped["labels"], unflipped["labels"].flip(-1))
    assert flipped["expressions"] == [swap_left_right(s["expression"]) for s in samples]
    assert collate([flip_all[k] for k in range(4)])["original_sizes"] == plain["original_sizes"]

    first = KeyedTrainingSet(samples, TrainTransform(seed=1), seed=1)
    second = KeyedTrainingSet(samples, TrainTransform(seed=1), seed=1)
    epochs = []
    for keys in (range(4), range(4, 8)):  # keys 4..7 read the same samples again, in the next epoch
        a, b = collate([first[k] for k in keys]), collate([second[k] for k in reversed(keys)][::-1])
        torch.testing.assert_close(a["pixel_values"], b["pixel_values"])
        assert a["expressions"] == b["expressions"]
        epochs.append(a["pixel_values"])
    assert not torch.allclose(epochs[0], epochs[1])  # each epoch draws fresh augmentations
    assert not torch.allclose(epochs[0], plain["pixel_values"])  # jitter is on by default


def test_collate_in_dataloader_workers(processor):
    from s4eca_peft.data.loaders import KeyedTrainingSet

    dataset = KeyedTrainingSet(make_synthetic_dataset(8, image_size=64, seed=9), TrainTransform(seed=3), seed=3)

    def run(num_workers):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=4, num_workers=num_workers, collate_fn=ReferringCollator(processor)
        )
        return [batch["pixel_values"] for batch in loader]

    first, second = run(2), run(0)  # workers or not, the same batches
    assert len(first) == 2 and first[0].shape == (4, 3, 64, 64)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_collate_rejects_mismatched_mask(processor, samples):
    bad = dict(samples[0], mask=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="synthetic-5-0.*mask is \\(10, 10\\)"):
        ReferringCollator(processor)([bad])
