"""Nothing is left unadapted or frozen without a word: encoders without default targets, targets whose output an
adapter cannot read, and head-like modules outside `modules_to_save`."""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config
from torch import nn
from transformers import BertModel, DeiTConfig, DeiTModel, SwinModel

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.tuner import S4ECAVisionLayer

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}


class Composite(nn.Module):
    """A user's own two-encoder model with a head of its own."""

    def __init__(self, vision: nn.Module) -> None:
        super().__init__()
        self.text = BertModel(tiny_text_config("bert"), add_pooling_layer=False)
        self.vision = vision
        self.mask_head = nn.Linear(16, 1)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        self.text(input_ids=input_ids)
        return self.mask_head(self.vision(pixel_values=pixel_values).last_hidden_state)


def deit() -> DeiTModel:
    config = DeiTConfig(
        image_size=IMAGE_SIZE, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32,
    )
    return DeiTModel(config, add_pooling_layer=False)


def test_an_encoder_without_default_targets_is_refused_with_its_blocks():
    with pytest.raises(ValueError, match="no default targets for the `deit` encoder DeiTModel at 'vision'") as error:
        get_peft_model(Composite(deit()), S4ECAConfig(**TINY, modules_to_save=["mask_head"]))
    message = str(error.value)
    assert "DeiTLayer (2): vision.layers.0, vision.layers.1" in message
    assert "vision_target_modules" in message and "text_target_modules" in message
    # named explicitly, it is adapted
    config = S4ECAConfig(**TINY, vision_target_modules=r"vision\.layers\.\d+", modules_to_save=["mask_head"])
    model = get_peft_model(Composite(deit()), config)
    assert sum(isinstance(m, S4ECAVisionLayer) for m in model.modules()) == 2
    output = model(pixel_values=torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), input_ids=torch.randint(3, VOCAB_SIZE, (1, 5)))
    assert output.shape == (1, 2 + 64, 1)  # CLS and distillation tokens, an 8 x 8 grid


class DictBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hidden_states": self.linear(hidden_states)}


class Unannotated(DictBlock):
    def forward(self, hidden_states):  # unannotated on purpose
        return {"hidden_states": self.linear(hidden_states)}


class DictModel(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([block])

    def forward(self, hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.blocks[0](hidden_states)


@pytest.mark.parametrize(
    "target, message",
    [
        ("vision_model.backbone.swin.encoder", "SwinEncoder.*returns a ModelOutput"),
        ("vision_model.backbone", "is a whole model"),
        ("vision_model.backbone.swin.encoder.layers", "has no forward of its own"),
    ],
)
def test_targets_whose_output_cannot_be_read_are_refused_at_injection(target, message):
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    with pytest.raises(ValueError, match=message) as error:
        get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(**TINY, vision_target_modules=[target]))
    assert "Target the blocks inside it instead" in str(error.value) and "SwinLayer" in str(error.value)


def test_a_block_returning_a_mapping_is_refused_at_injection_or_else_at_its_first_forward():
    config = S4ECAConfig(**TINY, text_hidden_size=12, vision_target_modules=["blocks.0"])
    with pytest.raises(ValueError, match=r"'blocks.0' \(DictBlock\) returns a mapping"):
        get_peft_model(DictModel(DictBlock()), config)
    model = get_peft_model(DictModel(Unannotated()), config)  # nothing tells at injection
    model.set_language_proxies(torch.randn(1, 4, 12))
    with pytest.raises(TypeError, match=r"cannot read the output of Unannotated \(dict\)"):
        model(torch.randn(1, 4, 16))


def test_a_head_that_would_stay_frozen_is_named_in_a_warning():
    vision = SwinModel(tiny_vision_config("swin"))
    with pytest.warns(UserWarning, match=r"\['mask_head'\] look like a task head but will stay frozen") as record:
        model = get_peft_model(Composite(vision), S4ECAConfig(**TINY))
    assert "modules_to_save=['mask_head']" in str(record[0].message)
    assert not any(p.requires_grad for p in model.base_model.model.mask_head.parameters())

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*will stay frozen")
        model = get_peft_model(Composite(SwinModel(tiny_vision_config("swin"))), S4ECAConfig(**TINY, modules_to_save=["mask_head"]))
        assert all(p.requires_grad for p in model.base_model.model.mask_head.modules_to_save.parameters())
        get_peft_model(Composite(SwinModel(tiny_vision_config("swin"))), S4ECAConfig(**TINY, modules_to_save=[]))
        config = ReferringSegmentationConfig(
            vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
        )
        get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(**TINY))  # its head is saved by default
