"""The training optimizer: AdamW over float32 trainable parameters, fused on CUDA only."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny_configs import tiny_text_config, tiny_vision_config

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.training import TrainingArguments
from s4eca_peft.training.loop import build_optimizer


@pytest.fixture(scope="module")
def bf16_adapted() -> torch.nn.Module:
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    model = get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(num_queries=4, text_bottleneck_size=16,
                                                                           text_num_heads=2, vision_bottleneck_size=8))
    model.get_base_model().cast_frozen_parameters(torch.bfloat16)
    return model


@pytest.mark.parametrize(("device", "fused"), [("cuda", True), ("cpu", False), (torch.device("cuda:1"), True)])
def test_adamw_is_fused_only_on_cuda(bf16_adapted, device, fused):
    training = TrainingArguments()
    optimizer = build_optimizer(bf16_adapted, training, device)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert bool(optimizer.defaults["fused"]) is fused
    params = [p for group in optimizer.param_groups for p in group["params"]]
    trainable = [p for p in bf16_adapted.parameters() if p.requires_grad]
    assert len(params) == len(trainable) > 0 and {id(p) for p in params} == {id(p) for p in trainable}
    assert {p.dtype for p in params} == {torch.float32}  # the frozen encoders are bf16; what trains stays float32
    assert any(p.dtype == torch.bfloat16 for p in bf16_adapted.parameters())
