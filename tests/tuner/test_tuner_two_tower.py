"""Two-tower models (CLIP, SigLIP): default targets in both towers, and a forward that runs the vision tower before
the text tower still conditions each image on the expression of its own call."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny_configs import VOCAB_SIZE
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

from s4eca_peft import S4ECAConfig
from s4eca_peft.tuner import S4ECATextLayer, S4ECAVisionLayer

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}
TEXT = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "vocab_size": VOCAB_SIZE, "max_position_embeddings": 16,
}
VISION = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "image_size": 32,
    "patch_size": 8,
}
MODELS = {
    "clip": lambda: CLIPModel(
        CLIPConfig(text_config={**TEXT, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}, vision_config=VISION)
    ),
    "siglip": lambda: SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION)),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    torch.manual_seed(0)
    peft_model = get_peft_model(MODELS[request.param]().eval(), S4ECAConfig(**TINY, init_weights=False))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if ".s4eca_" in name and name.endswith("weight"):
                parameter.normal_(std=0.5)
    return peft_model.eval()


def texts(*numbers: int) -> dict[str, torch.Tensor]:
    ids = [torch.randint(3, VOCAB_SIZE, (1, 7), generator=torch.Generator().manual_seed(n)) for n in numbers]
    return {"input_ids": torch.cat(ids), "attention_mask": torch.ones(len(numbers), 7, dtype=torch.long)}


def images(*numbers: int) -> torch.Tensor:
    return torch.cat([torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(n)) for n in numbers])


@torch.no_grad()
def image_features(model, image_numbers, text_numbers) -> torch.Tensor:
    """The vision tower's token features `(batch, tokens, hidden)` in a call with both images and texts."""
    output = model(pixel_values=images(*image_numbers), **texts(*text_numbers))
    return output.vision_model_output.last_hidden_state


def test_default_targets_cover_both_towers(model):
    config = model.peft_config["default"]
    assert config.text_target_modules == ["text_model.encoder.layers.1"]
    assert config.vision_target_modules == [f"vision_model.encoder.layers.{i}" for i in range(2)]
    assert sum(isinstance(m, S4ECATextLayer) for m in model.modules()) == 1
    assert sum(isinstance(m, S4ECAVisionLayer) for m in model.modules()) == 2


def test_swapping_the_texts_of_a_call_swaps_the_image_conditioning(model):
    straight = image_features(model, (0, 1), (10, 11))
    swapped = image_features(model, (0, 1), (11, 10))
    torch.testing.assert_close(swapped[0], image_features(model, (0,), (11,))[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(swapped[1], image_features(model, (1,), (10,))[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(straight[0], image_features(model, (0,), (10,))[0], rtol=1e-4, atol=1e-5)
    assert (straight[0] - swapped[0]).abs().max() > 1e-3  # the text really changes the image features
    with model.disable_adapter(), torch.no_grad():
        plain = model(pixel_values=images(0, 1), **texts(10, 11)).vision_model_output.last_hidden_state
    assert (plain - straight).abs().max() > 1e-3


def test_image_features_alone_need_proxies(model):
    with pytest.raises(RuntimeError, match="found no language proxies for this forward"), torch.no_grad():
        model.get_image_features(pixel_values=images(0))
    with torch.no_grad():
        model(pixel_values=images(0), **texts(10))
        proxies = model.get_language_proxies()
        model.set_language_proxies(proxies)
        alone = model.get_image_features(pixel_values=images(0)).last_hidden_state
    torch.testing.assert_close(alone, image_features(model, (0,), (10,)), rtol=1e-4, atol=1e-5)


def test_one_expression_for_several_images_is_refused(model):
    """CLIP scores every text against every image; S4ECA conditions an image on one expression of its own."""
    with pytest.raises(RuntimeError, match="batch of 1 expressions but the vision backbone got a batch of 2"):
        image_features(model, (0, 1), (10,))
