"""Tiny backbone configs shared by the tests (random weights, built offline)."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    CLIPTextConfig,
    ConvNextConfig,
    Dinov2Config,
    ResNetConfig,
    RobertaConfig,
    SwinConfig,
    ViTConfig,
)

IMAGE_SIZE = 64
VOCAB_SIZE = 120


def tiny_vision_config(model_type: str):
    if model_type == "swin":
        # keeps IMAGE_SIZE / patch / 2**3 >= window_size (Swin breaks on smaller maps)
        return SwinConfig(
            image_size=IMAGE_SIZE, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2
        )
    if model_type == "convnext":
        return ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
    if model_type == "resnet":
        return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic")
    if model_type == "vit":
        return ViTConfig(
            image_size=IMAGE_SIZE, patch_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=32,
        )
    if model_type == "dinov2":
        return Dinov2Config(
            image_size=IMAGE_SIZE, patch_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2
        )
    raise KeyError(model_type)


def tiny_text_config(model_type: str):
    common = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB_SIZE
    )
    if model_type == "bert":
        return BertConfig(**common)
    if model_type == "roberta":
        return RobertaConfig(**common, pad_token_id=1, max_position_embeddings=64)
    if model_type == "clip_text_model":
        return CLIPTextConfig(**common, max_position_embeddings=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    raise KeyError(model_type)


VISION_TYPES = ["convnext", "dinov2", "resnet", "swin", "vit"]
TEXT_TYPES = ["bert", "clip_text_model", "roberta"]


def tiny_inputs(batch: int = 2, size: int | None = None, length: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    """A batch of random images and token ids, the last sample's expression padded by three tokens."""
    size = IMAGE_SIZE if size is None else size
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 3 :] = 0
    return {
        "pixel_values": torch.randn(batch, 3, size, size, generator=generator),
        "input_ids": torch.randint(3, VOCAB_SIZE, (batch, length), generator=generator),
        "attention_mask": attention_mask,
    }
