"""The synthetic scene generator: determinism, and expressions that need language to resolve."""

from __future__ import annotations

import time

import numpy as np
import pytest

from s4eca_peft.data import (
    SyntheticSceneStream,
    generate_scene,
    generate_scene_with_layout,
    make_synthetic_dataset,
)
from s4eca_peft.data.synthetic import _NOUNS, RELATIONS, SceneObject, _local, _shape

SCENES = [generate_scene_with_layout((11, i), image_size=128) for i in range(60)]


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = generate_scene(5), generate_scene(5), generate_scene(6)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:]
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    image, mask, expression, category = a
    assert image.mode == "RGB" and image.size == (128, 128)
    assert mask.dtype == np.bool_ and mask.shape == (128, 128)
    assert isinstance(expression, str) and category in _NOUNS
    assert generate_scene(np.random.default_rng(5))[2] == expression  # a generator works like its seed


def test_every_relation_occurs():
    assert {scene.relation for scene in SCENES} == set(RELATIONS)


def same_category(scene) -> list[SceneObject]:
    return [obj for obj in scene.objects if obj.category == scene.category]


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_scene_needs_language_and_is_unambiguous(index):
    scene = SCENES[index]
    target = scene.objects[scene.target]
    peers = [obj for obj in same_category(scene) if obj is not target]
    assert len(peers) >= 1  # at least two objects of the target's category
    assert any(noun in scene.expression for noun in _NOUNS[scene.category])
    # the mask is exactly the target's shape, and non-empty
    expected = np.zeros_like(scene.mask)
    region, u, v = _local(target, 128)
    expected[region] = _shape(target, u, v)
    assert scene.mask.sum() > 0
    np.testing.assert_array_equal(scene.mask, expected)
    # the stated rule picks out the target only
    words = scene.expression.split()
    if scene.relation == "colour":
        assert target.colour in scene.expression and all(peer.colour != target.colour for peer in peers)
    elif scene.relation == "size":
        assert all(peer.size != target.size for peer in peers)
        assert any(
            w in words
            for w in (
                ("large", "largest", "big", "biggest") if target.size == "large" else ("small", "smallest", "little")
            )
        )
    elif scene.relation in ("position", "colour+position"):
        if scene.relation == "colour+position":
            assert target.colour in scene.expression
            peers = [peer for peer in peers if peer.colour == target.colour]
            assert peers
        axis = "cx" if any(w.startswith(("left", "right")) for w in words) else "cy"
        sign = -1 if any(w in words for w in ("left", "leftmost", "top", "topmost", "upper")) else 1
        gaps = [sign * (getattr(target, axis) - getattr(peer, axis)) for peer in peers]
        assert min(gaps) >= 0.08 * 128 - 1e-6
    else:
        assert len(scene.roads) == 1
        axis, centre, _ = scene.roads[0]
        coordinate = "cy" if axis == "h" else "cx"
        target_side = getattr(target, coordinate) < centre
        assert all((getattr(peer, coordinate) < centre) != target_side for peer in peers)
        first_words = ("above", "north", "left", "west")
        assert target_side == any(w in words for w in first_words)


def test_objects_never_overlap():
    for scene in SCENES[:20]:
        boxes = [obj.box() for obj in scene.objects]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            for a0, b0, a1, b1 in boxes[i + 1 :]:
                assert not (x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1)


def test_dataset_and_stream_are_deterministic():
    first, again = make_synthetic_dataset(3, image_size=64, seed=2), make_synthetic_dataset(3, image_size=64, seed=2)
    assert {"image", "mask", "expression", "image_id", "sample_id", "category"} <= set(first.column_names)
    assert first["expression"] == again["expression"] and first["sample_id"] == [
        "synthetic-2-0",
        "synthetic-2-1",
        "synthetic-2-2",
    ]
    stream = SyntheticSceneStream(image_size=64, seed=2, length=10)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(first[i]["image"]), np.asarray(stream[i]["image"]))
        np.testing.assert_array_equal(first[i]["mask"], stream[i]["mask"])
        assert first[i]["expression"] == stream[i]["expression"] and first[i]["category"] == stream[i]["category"]
    other = make_synthetic_dataset(3, image_size=64, seed=3)
    assert not np.array_equal(np.asarray(first[0]["image"]), np.asarray(other[0]["image"]))
    assert len(stream) == 10
    with pytest.raises(IndexError):
        stream[10]
    with pytest.raises(ValueError, match="image_size"):
        generate_scene(0, image_size=16)


def test_generation_is_fast():
    start = time.process_time()  # CPU time: not inflated by other load on the machine
    for i in range(50):
        generate_scene((99, i), image_size=128)
    per_scene = (time.process_time() - start) / 50
    assert per_scene < 0.02, f"{per_scene * 1000:.1f} ms per 128 px scene"
