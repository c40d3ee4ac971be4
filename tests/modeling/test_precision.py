"""Frozen encoder weights stored in the compute dtype of mixed-precision training."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.modeling import cast_frozen_parameters, compute_dtype

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}


@pytest.fixture(scope="module")
def adapted() -> torch.nn.Module:
    """A tiny Swin + BERT model with two S4ECA adapters (the second inactive), non-zero updates."""
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    model = get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(**TINY, init_weights=False))
    model.add_adapter("other", S4ECAConfig(**TINY, init_weights=False))
    return model


def make_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0
    return {
        "pixel_values": torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "input_ids": torch.randint(3, VOCAB_SIZE, (2, 7), generator=generator),
        "attention_mask": attention_mask,
        "labels": (torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator) > 0.8).float(),
    }


def bf16_step(model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of a bf16-autocast training forward and the gradients of the trainable parameters."""
    model.train()
    model.get_base_model().encoders_eval()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**make_inputs())
    output.loss.backward()
    return output.logits.float(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_frozen_encoders_in_bf16_adapters_and_head_stay_float32(adapted):
    model = copy.deepcopy(adapted)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad and ".s4eca_" not in n}
    assert any("vision_model" in n for n in frozen) and any("text_model" in n for n in frozen)
    cast = model.cast_frozen_parameters(torch.bfloat16)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    encoder_frozen = {n for n in frozen if ".vision_model." in n or ".text_model." in n}
    assert cast == len(encoder_frozen) > 0
    assert all(dtypes[n] == torch.bfloat16 for n in encoder_frozen)
    # adapters, active ("default") or not ("other"), and the head keep float32
    assert any(".s4eca_vision_adapter.other." in n for n in dtypes)
    assert all(dtype == torch.float32 for n, dtype in dtypes.items() if n not in encoder_frozen)
    assert model.cast_frozen_parameters(torch.bfloat16) == 0  # idempotent


def test_saved_adapter_is_byte_identical(adapted, tmp_path):
    reference, model = copy.deepcopy(adapted), copy.deepcopy(adapted)
    model.cast_frozen_parameters(torch.bfloat16)
    reference.save_pretrained(tmp_path / "fp32")
    model.save_pretrained(tmp_path / "cast")
    for adapter in ("", "other"):
        name = f"{adapter}/adapter_model.safetensors".lstrip("/")
        assert (tmp_path / "cast" / name).read_bytes() == (tmp_path / "fp32" / name).read_bytes()


def test_training_step_matches_float32_weights_within_bf16_tolerance(adapted):
    reference, model = copy.deepcopy(adapted), copy.deepcopy(adapted)
    model.cast_frozen_parameters(torch.bfloat16)
    expected_logits, expected_grads = bf16_step(reference)
    logits, grads = bf16_step(model)
    scale = expected_logits.abs().max()
    assert (logits - expected_logits).abs().max() <= 0.05 * scale
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and grad.dtype == torch.float32, name
        want = expected_grads[name]
        # bf16 keeps 8 bits of mantissa: compare each gradient tensor by its relative error
        assert (grad - want).norm() <= 0.1 * want.norm() + 1e-6, name
    assert any(grad.abs().max() > 0 for name, grad in grads.items() if ".s4eca_vision_adapter." in name)


def test_cast_refuses_non_float_dtypes_and_maps_mixed_precision():
    with pytest.raises(ValueError, match="floating-point"):
        cast_frozen_parameters(torch.nn.Linear(2, 2), torch.int8)
    assert compute_dtype("bf16") is torch.bfloat16 and compute_dtype("fp16") is torch.float16
    assert compute_dtype("no") is None and compute_dtype(None) is None
    with pytest.raises(ValueError, match="fp8"):
        compute_dtype("fp8")
