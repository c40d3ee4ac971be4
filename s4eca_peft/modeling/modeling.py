"""Referring-segmentation base model: text encoder -> vision backbone -> language-conditioned head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ..files import HUB_OPTIONS, hub_kwargs, pin_hub_revision
from .backbones import (
    VisionFeatureExtractor,
    build_text_encoder,
    build_vision_backbone,
    load_text_encoder,
    load_vision_backbone,
)
from .configuration import ReferringSegmentationConfig
from .head import SegmentationHead
from .precision import cast_frozen_parameters
from .remote_code import refuse_remote_code


@dataclass
class ReferringSegmentationOutput(ModelOutput):
    """Output of [`ReferringSegmentationModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            BCE-with-logits + Dice, computed in float32 at the labels' resolution; only when `labels` is given.
        logits (`torch.FloatTensor` of shape `(batch, 1, height / 4, width / 4)`):
            Mask logits at a quarter of the input resolution.
        category_logits (`torch.FloatTensor` of shape `(batch, 1, height / 4, width / 4)`, *optional*):
            Logits of every object of the named category (only with `config.head_category_map`).
        text_hidden_states (`torch.FloatTensor` of shape `(batch, sequence_length, text_dim)`):
            Word-level features of the text encoder's last layer.
        sentence_embedding (`torch.FloatTensor` of shape `(batch, text_dim)`):
            Mean of the word-level features over non-padding tokens.
        vision_features (`tuple(torch.FloatTensor)`):
            Four maps of shape `(batch, C_i, height / s_i, width / s_i)` for strides `s_i` = 4, 8, 16, 32.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    category_logits: torch.FloatTensor | None = None
    text_hidden_states: torch.FloatTensor | None = None
    sentence_embedding: torch.FloatTensor | None = None
    vision_features: tuple[torch.FloatTensor, ...] | None = None


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, bce_weight: float = 1.0,
                      dice_weight: float = 1.0) -> torch.Tensor:
    """BCE-with-logits + soft Dice in float32; ``logits`` are upsampled to the labels' size."""
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    labels = labels.float()
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    probs = logits.sigmoid().flatten(1)
    target = labels.flatten(1)
    dice = 1 - (2 * (probs * target).sum(-1) + 1) / (probs.sum(-1) + target.sum(-1) + 1)
    return bce_weight * bce + dice_weight * dice.mean()


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid tokens: ``(batch, length, dim) -> (batch, dim)``."""
    if attention_mask is None:
        return hidden_states.mean(1)
    weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ReferringSegmentationModel(PreTrainedModel):
    """A frozen vision backbone and text encoder with a trainable segmentation head. The text encoder runs first, so
    that adapters inside it can hand language proxies to adapters inside the vision backbone."""

    config_class = ReferringSegmentationConfig
    base_model_prefix = "referring_segmentation"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: ReferringSegmentationConfig, vision_backbone: PreTrainedModel | None = None,
                 text_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        vision_backbone = build_vision_backbone(config.vision_config) if vision_backbone is None else vision_backbone
        self.vision_model = VisionFeatureExtractor(vision_backbone, config.vit_feature_layers)
        self.text_model = text_model if text_model is not None else build_text_encoder(config.text_config)
        self.segmentation_head = SegmentationHead(
            self.vision_model.channels, config.text_config.hidden_size, config.decoder_dim, config.head_reads_sentence,
            config.head_place_kernel, config.head_rank_kernel, config.head_category_map,
            config.head_rank_words, config.head_rank_product,
        )
        self.post_init()
        if config.freeze_backbones:
            self.freeze_backbones()

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether activation checkpointing is on: what peft 0.21 asks under this name, answered without the
        deprecation warning transformers 5 gives for it (`is_activation_checkpointing`)."""
        return self.is_activation_checkpointing

    def freeze_backbones(self) -> None:
        """``requires_grad=False`` on both encoders (no hidden ``no_grad``: adapters inside still train)."""
        for module in (self.vision_model, self.text_model):
            module.requires_grad_(False)

    def cast_frozen_parameters(self, dtype: torch.dtype) -> int:
        """Store the encoders' frozen weights in `dtype`, in place (`s4eca_peft.modeling.precision`); call it after
        `get_peft_model` and train under `torch.autocast(dtype=dtype)`. Returns the number of parameters cast."""
        return sum(cast_frozen_parameters(encoder, dtype) for encoder in (self.vision_model, self.text_model))

    def encoders_eval(self) -> None:
        """Eval mode for the frozen encoders (no dropout, attention dropout included); call after ``train()``.

        transformers recomputes a block in backward only while that block is training, so the innermost checkpointed
        blocks (Swin's and BERT's layers, not the Swin stages around them) keep ``training=True`` on themselves alone.
        """
        for encoder in (self.vision_model, self.text_model):
            encoder.eval()
            for module in encoder.modules():
                if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing and not any(
                    isinstance(inner, GradientCheckpointingLayer) and inner is not module for inner in module.modules()
                ):
                    module.training = True

    def enable_input_require_grads(self) -> None:
        """Make the encoders' input embeddings require grad (for gradient checkpointing with frozen encoders); unlike
        the generic version, this accepts embeddings that return tuples (Swin's patch embeddings do)."""

        def make_outputs_require_grad(module, inputs, output):
            for tensor in output if isinstance(output, tuple) else (output,):
                if torch.is_tensor(tensor) and tensor.is_floating_point():
                    tensor.requires_grad_(True)

        embeddings = []
        for module in (self.text_model, self.vision_model.backbone):
            try:
                layer = module.get_input_embeddings()
            except NotImplementedError:  # e.g. ResNet: its first convolution sees only the frozen pixels
                layer = getattr(module, "embedder", None)
            if layer is not None and all(layer is not seen for seen in embeddings):
                embeddings.append(layer)
        self._require_grads_hooks = [layer.register_forward_hook(make_outputs_require_grad) for layer in embeddings]

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> ReferringSegmentationModel:
        """Load a saved model; the encoders are frozen again (loading replaces their parameters)."""
        model = super().from_pretrained(*args, **refuse_remote_code(kwargs))
        if model.config.freeze_backbones:
            model.freeze_backbones()
        return model

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "is_mask_classifier", False):
            # small logits around the prior of a small object (about 5 % of the pixels)
            nn.init.normal_(module.weight, std=0.01)
            nn.init.constant_(module.bias, -3.0)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_backbones(cls, vision_name_or_path: str, text_name_or_path: str | None,
                       vision_revision: str | None = None, text_revision: str | None = None,
                       text_config: PretrainedConfig | None = None, **head_kwargs) -> ReferringSegmentationModel:
        """Pretrained encoders from Hub ids, folders or package references, and a fresh head (``head_kwargs`` go to
        the config). With ``text_name_or_path=None`` the text encoder is built, randomly initialised, from
        ``text_config``. A Hub encoder is loaded at the commit its revision (``vision_revision`` / ``text_revision``,
        else ``revision``, else the default branch) resolves to now, and that commit is recorded in the config."""
        hub = hub_kwargs(head_kwargs)
        head_kwargs = {key: value for key, value in head_kwargs.items() if key not in HUB_OPTIONS}
        default_revision = hub.pop("revision", None)
        vision_commit = pin_hub_revision(vision_name_or_path, vision_revision or default_revision, **hub)
        text_commit = pin_hub_revision(text_name_or_path, text_revision or default_revision, **hub)
        vision = load_vision_backbone(vision_name_or_path, **hub_kwargs(dict(hub, revision=vision_commit)))
        if text_name_or_path is not None:
            text = load_text_encoder(text_name_or_path, **hub_kwargs(dict(hub, revision=text_commit)))
        elif text_config is not None:
            text = build_text_encoder(text_config)
        else:
            raise ValueError(
                "`text_name_or_path` is None and no `text_config` was given to build a text encoder from.")
        attention = (vision.config._attn_implementation, text.config._attn_implementation)
        config = ReferringSegmentationConfig(
            vision_config=vision.config, text_config=text.config, vision_name_or_path=str(vision_name_or_path),
            text_name_or_path=str(text_name_or_path) if text_name_or_path is not None else None,
            vision_revision=vision_commit, text_revision=text_commit, **head_kwargs,
        )
        # the composite config resets its sub-configs' attention choice; keep what the encoders were loaded with
        config.vision_config._attn_implementation, config.text_config._attn_implementation = attention
        return cls(config, vision_backbone=vision, text_model=text)

    @staticmethod
    def _check_inputs(pixel_values: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor | None,
                      category_labels: torch.Tensor | None = None) -> None:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                f"`pixel_values` must have shape (batch, 3, height, width), got {tuple(pixel_values.shape)}.")
        if input_ids.ndim != 2 or input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"`input_ids` must have shape (batch, length) with the batch of `pixel_values` "
                             f"({pixel_values.shape[0]}), got {tuple(input_ids.shape)}.")
        expected = (pixel_values.shape[0], 1, *pixel_values.shape[-2:])
        for name, value in (("labels", labels), ("category_labels", category_labels)):
            if value is not None and tuple(value.shape) != expected:
                raise ValueError(f"`{name}` must have shape {expected} (batch, 1, height, width of `pixel_values`), "
                                 f"got {tuple(value.shape)}.")

    def _head_language(self, sentence: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sentence feature and words the head reads: in training, zero for a `head_sentence_dropout` share of
        samples."""
        dropout = self.config.head_sentence_dropout
        if not self.training or not dropout:
            return sentence, words
        keep = (torch.rand(sentence.shape[0], 1, device=sentence.device) >= dropout).to(sentence.dtype)
        return sentence * keep, words * keep[:, :, None]

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, category_labels: torch.Tensor | None = None,
                **kwargs) -> ReferringSegmentationOutput:
        """``labels``: the target masks; ``category_labels``: masks of every object of the named category, read
        only by a head with a category map (where absent, its map learns the target masks)."""
        labels, category_labels = (mask.unsqueeze(1) if mask is not None and mask.ndim == 3 else mask
                                   for mask in (labels, category_labels))
        self._check_inputs(pixel_values, input_ids, labels, category_labels)
        # step 1: word-level features (text adapters write language proxies here) -> (batch, length, text_dim)
        words = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # step 2: sentence feature -> (batch, text_dim)
        sentence = masked_mean(words, attention_mask)
        # step 3: four stage features (vision adapters read the proxies) -> (batch, C_i, H/s_i, W/s_i)
        features = self.vision_model(pixel_values)
        # step 4: language-conditioned decoding -> (batch, 1, H/4, W/4)
        dtype = features[0].dtype
        head_sentence, head_words = self._head_language(sentence, words)
        logits, category = self.segmentation_head(features, head_sentence.to(dtype), head_words.to(dtype),
                                                  attention_mask)
        # step 5: loss in float32 at the labels' resolution (the category map's: on every object of the category)
        loss = None
        if labels is not None:
            loss = segmentation_loss(logits, labels, self.config.bce_weight, self.config.dice_weight)
            if category is not None:
                loss = loss + segmentation_loss(category, labels if category_labels is None else category_labels,
                                                self.config.bce_weight, self.config.dice_weight)
        return ReferringSegmentationOutput(loss=loss, logits=logits, category_logits=category, text_hidden_states=words,
                                           sentence_embedding=sentence, vision_features=tuple(features))


def register_auto_classes() -> None:
    """Register the config and model with ``AutoConfig`` / ``AutoModel`` (idempotent)."""
    AutoConfig.register(ReferringSegmentationConfig.model_type, ReferringSegmentationConfig, exist_ok=True)
    AutoModel.register(ReferringSegmentationConfig, ReferringSegmentationModel, exist_ok=True)
