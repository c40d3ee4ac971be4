"""`compile_adapters`: compiled S4ECA adapters compute what eager ones do, and save the same adapter."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import get_peft_model, get_peft_model_state_dict
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config
from torch._dynamo.utils import counters

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.tuner import compile_adapters

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}


def tiny_adapted():
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    return get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(**TINY, init_weights=False))


def training_step(model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0
    inputs = {
        "pixel_values": torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "input_ids": torch.randint(3, VOCAB_SIZE, (2, 7), generator=generator),
        "attention_mask": attention_mask,
        "labels": (torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator) > 0.8).float(),
    }
    model.train()
    model.get_base_model().encoders_eval()
    model.zero_grad(set_to_none=True)
    output = model(**inputs)
    output.loss.backward()
    return output.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_compile_adapters_needs_adapters():
    with pytest.raises(ValueError, match="after `get_peft_model`"):
        compile_adapters(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_compiled_adapters_train_like_eager_ones_and_save_the_same_adapter():
    eager = tiny_adapted()
    model = copy.deepcopy(eager)
    layers = sum(1 for name, _ in model.named_modules() if name.endswith((".s4eca_vision_adapter", ".s4eca_text_adapter")))
    assert compile_adapters(model) == layers > 0
    expected_logits, expected_grads = training_step(eager)
    torch._dynamo.reset()
    counters.clear()
    logits, grads = training_step(model)
    assert counters["stats"]["unique_graphs"] >= 2  # the text adapter and the vision adapters ran compiled
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-3, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert any(".s4eca_vision_adapter." in n and g.abs().max() > 0 for n, g in grads.items())

    # the state dict (and so the saved adapter) has the eager model's keys, without `_orig_mod.`
    compiled_state, eager_state = get_peft_model_state_dict(model), get_peft_model_state_dict(eager)
    assert compiled_state.keys() == eager_state.keys()
    assert all(torch.equal(compiled_state[k], eager_state[k]) for k in eager_state)
