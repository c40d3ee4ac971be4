"""Tiny random models, adapters and images shared by the tests (built offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from peft import get_peft_model
from PIL import Image
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from transformers import BertTokenizerFast

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationProcessor
from s4eca_peft.adapter_folder import save_for_inference
from s4eca_peft.tuner import S4ECAConfig

WORDS = (
    "the a of on in at to left right top bottom white red green blue gray small large car vehicle ship tank "
    "storage road building roof pool field tree near next middle two one leftmost largest"
).split()


def tiny_tokenizer() -> BertTokenizerFast:
    """A WordPiece tokenizer over a few dozen words: ids stay below the tiny text config's vocabulary."""
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    return BertTokenizerFast(vocab=vocab)


def build_tiny_adapter(folder: Path, seed: int = 0, vision: dict | None = None, text: dict | None = None) -> Path:
    """A random tiny S4ECA adapter (Swin + BERT from configs) written by `save_for_inference`; ``vision`` and
    ``text`` override fields of the tiny backbone configs (e.g. ``{"embed_dim": 24}``)."""
    torch.manual_seed(seed)
    vision_config, text_config = tiny_vision_config("swin"), tiny_text_config("bert")
    for config, overrides in ((vision_config, vision), (text_config, text)):
        for key, value in (overrides or {}).items():
            setattr(config, key, value)
    config = ReferringSegmentationConfig(vision_config=vision_config, text_config=text_config, decoder_dim=16)
    peft_config = S4ECAConfig(
        num_queries=4, text_bottleneck_size=16, text_num_heads=2, vision_bottleneck_size=8, init_weights=False
    )
    model = get_peft_model(ReferringSegmentationModel(config), peft_config)
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=IMAGE_SIZE, max_length=12)
    save_for_inference(model, processor, folder, extra_metadata={"note": "tiny random adapter for tests"})
    return folder


TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}
"""Small S4ECAConfig sizes that fit the tiny backbones."""


def build(vision: str = "swin", text: str = "bert", vision_config=None) -> ReferringSegmentationModel:
    """A seeded tiny base model in eval mode, from the tiny backbone configs (or ``vision_config``)."""
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=vision_config or tiny_vision_config(vision), text_config=tiny_text_config(text), decoder_dim=16
    )
    return ReferringSegmentationModel(config).eval()


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path
