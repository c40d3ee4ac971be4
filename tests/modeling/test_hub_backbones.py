"""Pinned backbones: training records the commit each Hub encoder resolved to; inference loads that commit even
after the repo's branch has moved on (two revisions on the loopback fake Hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub
from huggingface_hub import constants
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from tiny_models import tiny_tokenizer
from transformers import BertModel, SwinBackbone

from s4eca_peft.adapter_folder import load_base_model, save_for_inference
from s4eca_peft.files import pin_hub_revision
from s4eca_peft.modeling import ReferringSegmentationModel
from s4eca_peft.modeling.backbones import load_vision_backbone
from s4eca_peft.training.arguments import ModelArguments
from s4eca_peft.training.base_model import build_base_and_processor
from s4eca_peft.tuner import S4ECAConfig

VISION, TEXT = "owner/tiny-swin", "owner/tiny-bert"
VISION_KEY = "swin.embeddings.patch_embeddings.projection.weight"
TEXT_KEY = "embeddings.word_embeddings.weight"


def write_backbones(folder: Path, seed: int) -> tuple[Path, Path]:
    """A tiny Swin and a tiny BERT (with its tokenizer), random weights drawn from ``seed``."""
    torch.manual_seed(seed)
    vision_config = tiny_vision_config("swin")
    vision_config.out_features = ["stage1", "stage2", "stage3", "stage4"]
    SwinBackbone(vision_config).save_pretrained(folder / "swin")
    BertModel(tiny_text_config("bert"), add_pooling_layer=False).save_pretrained(folder / "bert")
    tiny_tokenizer().save_pretrained(folder / "bert")
    return folder / "swin", folder / "bert"


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("backbones")
    return {"v1": write_backbones(root / "v1", seed=0), "v2": write_backbones(root / "v2", seed=1)}


def publish(hub: FakeHub, folders: tuple[Path, Path], branch: str = "main") -> tuple[str, str]:
    return hub.add_repo(VISION, folders[0], branch), hub.add_repo(TEXT, folders[1], branch)


def weights(model: ReferringSegmentationModel) -> tuple[torch.Tensor, torch.Tensor]:
    return model.vision_model.backbone.state_dict()[VISION_KEY], model.text_model.state_dict()[TEXT_KEY]


def saved_weights(folders: tuple[Path, Path]) -> tuple[torch.Tensor, torch.Tensor]:
    vision = SwinBackbone.from_pretrained(folders[0]).state_dict()[VISION_KEY]
    return vision, BertModel.from_pretrained(folders[1], add_pooling_layer=False).state_dict()[TEXT_KEY]


def resolved_commits(hub: FakeHub, repo: str) -> set[str]:
    return {path.split("/resolve/")[1].split("/")[0] for _, path in hub.requests if path.startswith(f"/{repo}/resolve/")}


def test_training_records_commits_and_inference_loads_them_after_main_moved(versions, fake_hub, tmp_path, monkeypatch):
    first = publish(fake_hub, versions["v1"])
    base, processor, _ = build_base_and_processor(ModelArguments(vision_model=VISION, text_model=TEXT), IMAGE_SIZE)
    assert (base.config.vision_revision, base.config.text_revision) == first
    adapter = get_peft_model(base, S4ECAConfig(num_queries=4, text_bottleneck_size=16, text_num_heads=2,
                                               vision_bottleneck_size=8))
    folder = save_for_inference(adapter, processor, tmp_path / "adapter")
    recorded = json.loads((folder / "s4eca_base" / "config.json").read_text())
    assert (recorded["vision_revision"], recorded["text_revision"]) == first
    assert not (folder / "s4eca_base" / "model.safetensors").exists()  # Hub backbones are not copied

    second = publish(fake_hub, versions["v2"])  # main moves on
    assert second != first
    fake_hub.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-cache"))  # everything comes from the Hub
    rebuilt = load_base_model(folder)
    for loaded, expected in zip(weights(rebuilt), saved_weights(versions["v1"])):
        torch.testing.assert_close(loaded, expected)
    assert resolved_commits(fake_hub, VISION) == {first[0]} and resolved_commits(fake_hub, TEXT) == {first[1]}

    latest = load_vision_backbone(VISION)  # what an unpinned load would have read
    assert not torch.equal(latest.state_dict()[VISION_KEY], saved_weights(versions["v1"])[0])


def test_a_branch_or_tag_is_recorded_as_its_commit(versions, fake_hub):
    release = publish(fake_hub, versions["v1"], branch="release")
    publish(fake_hub, versions["v2"])
    model = ReferringSegmentationModel.from_backbones(VISION, TEXT, vision_revision="release", text_revision="release",
                                                      decoder_dim=16)
    assert (model.config.vision_revision, model.config.text_revision) == release
    for loaded, expected in zip(weights(model), saved_weights(versions["v1"])):
        torch.testing.assert_close(loaded, expected)


def test_pinning_refuses_unknown_revisions_and_folders(versions, fake_hub):
    publish(fake_hub, versions["v1"])
    with pytest.raises(ValueError, match=rf"Revision 'v9' does not exist in Hub repo '{VISION}'"):
        pin_hub_revision(VISION, "v9")
    with pytest.raises(ValueError, match="is a folder, not a Hub repo: revision 'main' cannot be applied"):
        pin_hub_revision(str(versions["v1"][0]), "main")
    assert pin_hub_revision(str(versions["v1"][0])) is None and pin_hub_revision(None) is None
