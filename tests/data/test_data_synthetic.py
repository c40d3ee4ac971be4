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
from s4eca_peft.data.scene_rules import ambiguity
from s4eca_peft.data.synthetic import (
    _NOUNS,
    DATA_VERSION,
    FAMILIES,
    RELATIONAL_FAMILIES,
    RELATIONS,
    SceneObject,
    SyntheticScene,
    _local,
    _shape,
)

SCENES = [generate_scene_with_layout((11, i), image_size=128, version=1) for i in range(60)]
SCENES_V2 = [generate_scene_with_layout((11, i), image_size=128) for i in range(300)]


def test_every_scene_carries_the_mask_of_every_object_of_the_targets_category():
    from s4eca_peft.data.synthetic import object_footprint

    for scene in SCENES_V2[:60]:
        expected = np.zeros_like(scene.mask)
        for obj in scene.objects:
            if obj.category == scene.category:
                index, inside = object_footprint(obj, 128)
                expected[index] |= inside
        np.testing.assert_array_equal(scene.category_mask, expected)
        assert scene.category_mask[scene.mask].all() and scene.category_mask.sum() > scene.mask.sum()


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


def test_every_version_1_family_occurs():
    assert {scene.family for scene in SCENES} == set(RELATIONS)


def test_version_2_is_the_default_has_every_family_and_a_sizeable_relational_share():
    assert DATA_VERSION == 2 and set(RELATIONS) < set(FAMILIES)
    families = [scene.family for scene in SCENES_V2]
    assert set(families) == set(FAMILIES)
    assert 0.35 < sum(f in RELATIONAL_FAMILIES for f in families) / len(families) < 0.65


def test_version_1_draws_the_scenes_it_always_drew():
    """The reference adapter's recorded scores are on these val scenes."""
    scenes = [generate_scene_with_layout((1_000_003, i), 128, version=1) for i in range(4)]
    assert [(s.expression, int(s.mask.sum())) for s in scenes] == [
        ("the car farthest to the left", 136), ("the lower white oil tank", 94), ("the vehicle above the road", 171),
        ("the gray oil tank on the left", 69)]
    with pytest.raises(ValueError, match=r"version.*\(1, 2\), got 3"):
        generate_scene(0, version=3)


@pytest.mark.parametrize("index", range(0, 300, 3))
def test_every_version_2_expression_is_unambiguous(index):
    scene = SCENES_V2[index]
    assert ambiguity(scene) is None, (scene.family, scene.expression)
    assert any(noun in scene.expression for noun in _NOUNS[scene.category])
    target = scene.objects[scene.target]
    expected = np.zeros_like(scene.mask)
    region, u, v = _local(target, 128)
    expected[region] = _shape(target, u, v)
    np.testing.assert_array_equal(scene.mask, expected)


def _moved(scene: SyntheticScene, **changes) -> SyntheticScene:
    """The scene with its target's attributes changed (the layout only; pixels are not redrawn)."""
    objects = [SceneObject(**vars(obj)) for obj in scene.objects]
    for key, value in changes.items():
        setattr(objects[scene.target], key, value)
    return SyntheticScene(scene.image, scene.mask, scene.expression, scene.category, scene.family, objects,
                          scene.target, scene.roads, scene.rule)


def test_the_checker_refuses_scenes_whose_rule_names_another_object_or_none():
    by_family = {scene.family: scene for scene in SCENES_V2}
    anchor = next(s for s in SCENES_V2 if s.family == "anchor" and s.rule["relation"] != "next to")
    peer = next(o for i, o in enumerate(anchor.objects) if o.category == anchor.category and i != anchor.target)
    assert "objects are" in ambiguity(_moved(anchor, cx=peer.cx, cy=peer.cy))  # now on the others' side
    ordinal = by_family["ordinal"]
    rival = next(o for i, o in enumerate(ordinal.objects) if o.category == ordinal.category and i != ordinal.target)
    assert ambiguity(_moved(ordinal, cx=rival.cx + 0.5, cy=rival.cy + 0.5)) is not None
    chain = by_family["attributes"]
    other = next(c for c in ("red", "blue", "white", "gray", "green", "turquoise", "black", "yellow", "brown", "orange")
                 if all(o.colour != c for o in chain.objects))
    assert "0 objects" in ambiguity(_moved(chain, colour=other))
    comparison = by_family["comparison"]
    same_size = "small" if comparison.rule["size"] == "large" else "large"
    assert "compared group" in ambiguity(_moved(comparison, size=same_size))
    corner = next(s for s in SCENES_V2 if s.family == "image-position" and s.rule["region"] != "centre")
    assert "not in the" in ambiguity(_moved(corner, cx=64.0, cy=64.0))
    alone = _moved(corner)
    alone.objects = [o for i, o in enumerate(alone.objects) if i == alone.target or o.category != alone.category]
    alone.target = alone.objects.index(next(o for o in alone.objects if o.category == alone.category))
    assert ambiguity(alone) == "no other object shares the target's category"


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
    if scene.family == "colour":
        assert target.colour in scene.expression and all(peer.colour != target.colour for peer in peers)
    elif scene.family == "size":
        assert all(peer.size != target.size for peer in peers)
        assert any(
            w in words
            for w in (
                ("large", "largest", "big", "biggest") if target.size == "large" else ("small", "smallest", "little")
            )
        )
    elif scene.family in ("position", "colour+position"):
        if scene.family == "colour+position":
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
    assert {"image", "mask", "expression", "image_id", "sample_id", "category", "family"} <= set(first.column_names)
    assert set(first["family"]) <= set(FAMILIES)
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
        assert first[i]["family"] == stream[i]["family"]
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


@pytest.mark.parametrize("version", [1, 2])
def test_a_training_run_reads_the_data_version_it_is_given(version):
    from s4eca_peft.data.loaders import build_datasets, load_split
    from s4eca_peft.training.arguments import DataArguments

    datasets = build_datasets(DataArguments(num_val_samples=8, num_test_samples=8, data_version=version), seed=0)
    for split in ("val", "test"):
        other = load_split("synthetic", split, num_samples=8, version=3 - version)
        assert datasets[split]["expression"] == load_split("synthetic", split, num_samples=8, version=version)["expression"]
        assert datasets[split]["expression"] != other["expression"]
    assert next(iter(datasets["train"]))["family"] in (RELATIONS if version == 1 else FAMILIES)
    with pytest.raises(ValueError, match=r"--data_version"):
        DataArguments(data_version=3)
