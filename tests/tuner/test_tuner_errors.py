"""Bad input gets a clear error: unmatched targets, vision before text, and adapters loaded into other backbones."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from tiny_models import TINY, build
from transformers import BertConfig, BertModel, SwinConfig, SwinModel

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig


@pytest.fixture(scope="module")
def swin_bert() -> ReferringSegmentationModel:
    return build()


def test_target_that_matches_nothing_lists_the_candidates(swin_bert):
    with pytest.raises(ValueError, match="matches no module") as error:
        get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, vision_target_modules=["backbone.blocks.0"]))
    message = str(error.value)
    assert "SwinLayer" in message and "vision_model.backbone" in message and "BertLayer" in message
    with pytest.raises(ValueError, match="text_target_modules") as error:
        get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, text_target_modules=r"text_model\.nope\.\d+"))
    assert "BertLayer (2): text_model.encoder.layer.0, text_model.encoder.layer.1" in str(error.value)


def test_unsupported_model_without_targets_lists_its_blocks():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ValueError, match="Found no text encoder") as error:
        get_peft_model(model, S4ECAConfig(**TINY))
    assert "Conv2d" in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"text_target_modules": [r"text_model.encoder.layer.1"], "vision_target_modules": r".*encoder\.layer\.1"},
            "both",
        ),
        ({"vision_target_modules": [r"text_model.encoder.layer.0"]}, "belongs to a text backbone"),
        ({"vision_target_modules": r"vision_model\.backbone\.swin\.encoder\.layers\.0(\.blocks\.0)?"}, "lies inside"),
    ],
)
def test_ambiguous_targets_are_refused(swin_bert, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, **kwargs))


def test_vision_adapter_before_any_text_forward_raises():
    vision = SwinModel(tiny_vision_config("swin")).eval()
    model = get_peft_model(vision, S4ECAConfig(**TINY, text_hidden_size=32))
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(RuntimeError, match="found no language proxies.*Run the text encoder first"):
        model(pixel_values=pixel_values)
    model.set_language_proxies(torch.randn(3, 4, 32))
    with pytest.raises(RuntimeError, match="batch of 3 expressions but the vision backbone got a batch of 1"):
        model(pixel_values=pixel_values)
    model.set_language_proxies(torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match=r"expects \(batch, num_queries, 32\)"):
        model(pixel_values=pixel_values)
    with pytest.raises(ValueError, match="shape"):
        model.set_language_proxies(torch.randn(4, 32))


def test_bare_vision_backbone_needs_the_proxy_width():
    with pytest.raises(ValueError, match="set `text_hidden_size`"):
        get_peft_model(SwinModel(tiny_vision_config("swin")), S4ECAConfig(**TINY))


def test_both_selections_off_takes_no_text_targets():
    with pytest.raises(ValueError, match="leave `text_target_modules=None`"):
        S4ECAConfig(scale_selection=False, spatial_selection=False, text_target_modules=["layer.1"])


def _saved_adapter(tmp_path, model) -> str:
    get_peft_model(model, S4ECAConfig(**TINY, init_weights=False)).save_pretrained(tmp_path)
    return str(tmp_path)


def test_loading_into_a_vision_backbone_of_other_sizes_names_both_shapes(tmp_path, swin_bert):
    path = _saved_adapter(tmp_path, copy.deepcopy(swin_bert))
    wider = SwinConfig(**{**tiny_vision_config("swin").to_dict(), "embed_dim": 24})
    with pytest.raises(ValueError, match="other sizes") as error:
        PeftModel.from_pretrained(build(vision_config=wider), path)
    assert "down.weight: checkpoint (8, 16) vs model (8, 24)" in str(error.value)


def test_a_checkpoint_with_missing_or_extra_adapter_tensors_is_refused(tmp_path, swin_bert):
    path = _saved_adapter(tmp_path, copy.deepcopy(swin_bert))
    state = load_file(f"{path}/adapter_model.safetensors")
    model = PeftModel.from_pretrained(copy.deepcopy(swin_bert), path)
    missing = dict(state)
    missing.pop(next(k for k in state if "s4eca_vision_adapter.up.weight" in k))
    with pytest.raises(ValueError, match="1 adapter tensors are missing from the checkpoint"):
        set_peft_model_state_dict(model, missing, adapter_name="default")
    extra = {**state, "base_model.model.vision_model.s4eca_vision_adapter.up.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="1 checkpoint tensors have no place in the model"):
        set_peft_model_state_dict(model, extra, adapter_name="default")


def test_loading_into_a_shallower_backbone_names_the_missing_blocks(tmp_path):
    path = _saved_adapter(
        tmp_path, build(vision_config=SwinConfig(**{**tiny_vision_config("swin").to_dict(), "depths": [2, 1, 1, 1]}))
    )
    with pytest.raises(ValueError, match="vision encoder with 5 adapted blocks.*gives 4.*that this model lacks: "
                       r"\['vision_model.backbone.swin.encoder.layers.0.blocks.1'\]"):
        PeftModel.from_pretrained(build(), path)


def test_loading_into_a_deeper_backbone_names_the_extra_blocks(tmp_path, swin_bert):
    path = _saved_adapter(tmp_path, copy.deepcopy(swin_bert))
    deeper = build(vision_config=SwinConfig(**{**tiny_vision_config("swin").to_dict(), "depths": [1, 1, 2, 1]}))
    with pytest.raises(ValueError, match=r"4 adapted blocks.*gives 5.*not trained for: "
                       r"\['vision_model.backbone.swin.encoder.layers.2.blocks.1'\]"):
        PeftModel.from_pretrained(deeper, path)


def test_explicit_targets_load_into_a_deeper_backbone(tmp_path, swin_bert):
    """Only targets chosen by default are tied to the depth; explicit ones adapt the named blocks wherever they are."""
    first = "vision_model.backbone.swin.encoder.layers.0.blocks.0"
    model = get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, vision_target_modules=[first]))
    assert model.peft_config["default"].targets_from_defaults == ["text"]
    model.save_pretrained(tmp_path / "explicit")
    deeper = build(vision_config=SwinConfig(**{**tiny_vision_config("swin").to_dict(), "depths": [1, 1, 2, 1]}))
    loaded = PeftModel.from_pretrained(deeper, tmp_path / "explicit")
    assert loaded.peft_config["default"].vision_target_modules == [first]


def test_loading_into_a_text_encoder_of_other_width_names_both_widths(tmp_path, swin_bert):
    path = _saved_adapter(tmp_path, copy.deepcopy(swin_bert))
    text = BertModel(BertConfig(**{**tiny_text_config("bert").to_dict(), "hidden_size": 48}), add_pooling_layer=False)
    other = ReferringSegmentationModel(
        ReferringSegmentationConfig(vision_config=tiny_vision_config("swin"), text_config=text.config, decoder_dim=16),
        text_model=text,
    )
    with pytest.raises(ValueError, match=r"width 32.*width 48.*\(batch, length, 32\) vs \(batch, length, 48\)"):
        PeftModel.from_pretrained(other, path)


def test_an_adapter_without_the_weights_its_config_asks_for_is_refused(tmp_path, swin_bert):
    import json

    from s4eca_peft.tuner import AdapterBackboneMismatchError

    model = get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, init_weights=False, text_feedback=False))
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "adapter_config.json"
    saved = json.loads(config_file.read_text())
    saved["text_feedback"] = True  # the config now asks for feedback weights the file does not hold
    config_file.write_text(json.dumps(saved))
    with pytest.raises(AdapterBackboneMismatchError, match=r"adapter tensors are missing from the checkpoint"):
        PeftModel.from_pretrained(copy.deepcopy(swin_bert), tmp_path)
