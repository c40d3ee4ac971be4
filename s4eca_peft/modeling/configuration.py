"""Configuration of the referring-segmentation base model (vision backbone + text encoder + head)."""

from __future__ import annotations

from typing import Any

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

HIERARCHICAL_VISION_TYPES = ("convnext", "resnet", "swin")
"""Vision backbones with four native stages (strides 4, 8, 16, 32); the others (ViT family) are resampled to them."""
SUPPORTED_VISION_TYPES = ("convnext", "dinov2", "resnet", "swin", "vit")
SUPPORTED_TEXT_TYPES = ("bert", "clip_text_model", "roberta")

STAGE_NAMES = ["stage1", "stage2", "stage3", "stage4"]

MODEL_OPTIONS = ("decoder_dim", "head_reads_sentence", "head_place_kernel", "head_rank_kernel",
                 "head_category_map", "head_rank_words", "head_rank_product", "head_sentence_dropout", "vit_feature_layers", "bce_weight", "dice_weight", "freeze_backbones")
"""The config fields not about the encoders: what `ReferringSegmentationModel.from_backbones` must be given again to
rebuild the same model."""


def _as_config(value: PretrainedConfig | dict[str, Any] | None, default_type: str, argument: str) -> PretrainedConfig:
    if value is None:
        return CONFIG_MAPPING[default_type]()
    if isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", None)
        if model_type is None:
            raise ValueError(
                f"`{argument}` is a dict without a `model_type` key; expected e.g. {{'model_type': ...}}.")
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"`{argument}` has unknown model_type {model_type!r}.")
        return CONFIG_MAPPING[model_type](**value)
    raise TypeError(f"`{argument}` must be a PretrainedConfig, a dict or None, got {type(value).__name__}.")


def check_model_type(model_type: str, role: str) -> None:
    """Refuse a ``role`` (``"vision backbone"`` or ``"text encoder"``) of a ``model_type`` this model cannot use."""
    supported = SUPPORTED_VISION_TYPES if role == "vision backbone" else SUPPORTED_TEXT_TYPES
    if model_type not in supported:
        raise ValueError(f"Unsupported {role} model_type {model_type!r}; supported: {', '.join(supported)}.")


class ReferringSegmentationConfig(PretrainedConfig):
    r"""
    Configuration of [`ReferringSegmentationModel`]: a vision backbone, a text encoder and a light segmentation head.

    Args:
        vision_config (`PretrainedConfig` or `dict`, *optional*, defaults to `SwinConfig()`):
            Config of the vision backbone. Supported `model_type`s: convnext, dinov2, resnet, swin, vit.
        text_config (`PretrainedConfig` or `dict`, *optional*, defaults to `BertConfig()`):
            Config of the text encoder. Supported `model_type`s: bert, clip_text_model, roberta.
        decoder_dim (`int`, *optional*, defaults to 128): Channel width of the segmentation head.
        head_reads_sentence (`bool`, *optional*, defaults to `True`):
            The head modulates every scale by the sentence feature and adds a sentence-generated mask kernel. With
            `False` it decodes the visual features alone: the expression then reaches the mask only through adapters
            that write it into the features (S4ECA's vision adapters).
        head_place_kernel (`bool`, *optional*, defaults to `False`):
            The sentence also generates a kernel over the pixels' place (x, y, x², y²), added to the mask logits: a
            direct sentence x place term for expressions that name a place ("the leftmost tank", "in the centre of
            the image"). Needs `head_reads_sentence`. `s4eca-train` turns it on (chosen on val); the config's default
            keeps the configs saved before the option, which lack the field, loading the head they were saved with.
        head_rank_kernel (`bool`, *optional*, defaults to `False`):
            The sentence also generates weights for the rank (first to third) of each candidate object counted from
            the left, right, top and bottom (the candidates: connected regions the head's own logits rate at least
            half as likely as its best pixel), added to the mask logits: a direct sentence x rank term for
            expressions that count ("the second tank from the left"). Needs `head_reads_sentence`. `s4eca-train`
            turns it on (chosen on val); the config's default keeps older configs loading the head they were saved
            with.
        head_category_map (`bool`, *optional*, defaults to `False`):
            The rank kernel counts the candidates of a second sentence-conditioned map, trained on every object of
            the named category (`category_labels`; where a sample has none, on its target mask), instead of the
            mask's own candidates, which also hold objects of other categories. Needs `head_rank_kernel`.
        head_rank_words (`bool`, *optional*, defaults to `False`):
            The rank kernel's weights come from two learned attention pools over the words (one can settle on the
            count, one on the side) instead of from the mean of the words. Needs `head_rank_kernel`. Off in
            `s4eca-train` too: on val it did not lift the ordinal expressions (docs/method.md).
        head_rank_product (`bool`, *optional*, defaults to `False`):
            Each rank kernel weight also gets the product of a weight per side and a weight per count, both from the
            sentence, so that "the second from the left" can weigh rank two from the left alone, where a sum of a
            side term and a count term also weighs the second from the right. Needs `head_rank_kernel`. On in
            `s4eca-train` (`--no_head_rank_product` leaves them out): val keeps them (docs/method.md).
        head_sentence_dropout (`float`, *optional*, defaults to 0.0):
            In training, the probability that a sample's head reads no sentence (a zero sentence feature): for those
            samples the expression reaches the mask only through adapters that write it into the features, which
            teaches S4ECA's vision adapters to carry it. Evaluation and inference always give the head the sentence.
        vit_feature_layers (`list[int]`, *optional*):
            For ViT-family backbones, the four hidden-state indices used as the four scales (defaults to evenly
            spaced layers ending at the last one).
        bce_weight, dice_weight (`float`, *optional*, defaults to 1.0): Weights of the loss's BCE and Dice terms.
        freeze_backbones (`bool`, *optional*, defaults to `True`):
            Set `requires_grad=False` on both encoders when the model is built.
        vision_name_or_path, text_name_or_path (`str`, *optional*):
            Hub id, folder or package reference each encoder was loaded from (recorded by `from_backbones`).
        vision_revision, text_revision (`str`, *optional*):
            Commit sha each encoder's Hub repo was loaded at (None for a folder); loading the recorded encoder again
            reads this commit, so a repo whose branch moved on gives the same weights.
    """

    model_type = "s4eca_referring_segmentation"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: PretrainedConfig | dict[str, Any] | None = None,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        decoder_dim: int = 128,
        head_reads_sentence: bool = True,
        head_place_kernel: bool = False,
        head_rank_kernel: bool = False,
        head_category_map: bool = False,
        head_rank_words: bool = False,
        head_rank_product: bool = False,
        head_sentence_dropout: float = 0.0,
        vit_feature_layers: list[int] | None = None,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        freeze_backbones: bool = True,
        vision_name_or_path: str | None = None,
        text_name_or_path: str | None = None,
        vision_revision: str | None = None,
        text_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.vision_config = _as_config(vision_config, "swin", "vision_config")
        self.text_config = _as_config(text_config, "bert", "text_config")
        check_model_type(self.vision_config.model_type, "vision backbone")
        check_model_type(self.text_config.model_type, "text encoder")
        if decoder_dim <= 0:
            raise ValueError(f"`decoder_dim` must be a positive integer, got {decoder_dim}.")
        if vit_feature_layers is not None and len(vit_feature_layers) != 4:
            raise ValueError(f"`vit_feature_layers` must list 4 hidden-state indices, got {vit_feature_layers}.")
        self.decoder_dim = decoder_dim
        if head_place_kernel and not head_reads_sentence:
            raise ValueError("`head_place_kernel` needs `head_reads_sentence`: the kernel is generated by the sentence.")
        self.head_reads_sentence = head_reads_sentence
        self.head_place_kernel = head_place_kernel
        if head_rank_kernel and not head_reads_sentence:
            raise ValueError("`head_rank_kernel` needs `head_reads_sentence`: the kernel is generated by the sentence.")
        self.head_rank_kernel = head_rank_kernel
        for name, wanted, reason in (
            ("head_category_map", head_category_map, "the map gives the rank kernel its candidates"),
            ("head_rank_words", head_rank_words, "the pools generate the rank kernel's weights"),
            ("head_rank_product", head_rank_product, "the products are the rank kernel's weights"),
        ):
            if wanted and not head_rank_kernel:
                raise ValueError(f"`{name}` needs `head_rank_kernel`: {reason}.")
            setattr(self, name, wanted)
        if not 0.0 <= head_sentence_dropout < 1.0 or (head_sentence_dropout and not head_reads_sentence):
            raise ValueError(f"`head_sentence_dropout` must be in [0, 1) and needs `head_reads_sentence`, got "
                             f"{head_sentence_dropout} with head_reads_sentence={head_reads_sentence}.")
        self.head_sentence_dropout = head_sentence_dropout
        self.vit_feature_layers = vit_feature_layers
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.freeze_backbones = freeze_backbones
        self.vision_name_or_path = vision_name_or_path
        self.text_name_or_path = text_name_or_path
        self.vision_revision = vision_revision
        self.text_revision = text_revision
        super().__init__(**kwargs)
