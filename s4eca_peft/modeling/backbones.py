"""Vision and text encoders behind one interface: four feature maps, and word-level features."""

from __future__ import annotations

import torch
import transformers
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, BertModel, PretrainedConfig, PreTrainedModel, RobertaModel

from .configuration import HIERARCHICAL_VISION_TYPES, STAGE_NAMES, check_model_type
from .packaged import resolve_model_reference
from .remote_code import auto_from_pretrained, refuse_remote_code


class _WithoutPooler:
    """Builds the model without its pooler: the package reads word features only. The pooler weights a checkpoint
    carries (MiniLM's do) are skipped without a load report."""

    _keys_to_ignore_on_load_unexpected = [r"(^|\.)pooler\.dense\."]

    def __init__(self, config: PretrainedConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)


class BertWordEncoder(_WithoutPooler, BertModel):
    """`BertModel` without its pooler."""


class RobertaWordEncoder(_WithoutPooler, RobertaModel):
    """`RobertaModel` without its pooler."""


VISION_CLASSES: dict[str, type[PreTrainedModel]] = {
    "convnext": transformers.ConvNextBackbone, "resnet": transformers.ResNetBackbone,
    "swin": transformers.SwinBackbone, "dinov2": transformers.Dinov2Model, "vit": transformers.ViTModel,
}
TEXT_CLASSES: dict[str, type[PreTrainedModel]] = {
    "bert": BertWordEncoder, "clip_text_model": transformers.CLIPTextModel, "roberta": RobertaWordEncoder,
}
FEATURE_STRIDES = (4, 8, 16, 32)


def _backbone_kwargs(model_type: str) -> dict:
    if model_type in HIERARCHICAL_VISION_TYPES:
        return {"out_features": list(STAGE_NAMES)}
    return {"add_pooling_layer": False} if model_type == "vit" else {}


def build_vision_backbone(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised vision backbone for ``config``."""
    check_model_type(config.model_type, "vision backbone")
    kwargs = _backbone_kwargs(config.model_type)
    if "out_features" in kwargs:  # a hierarchical backbone: the stages are a config field (out_indices follow)
        config.out_features = kwargs.pop("out_features")
    return VISION_CLASSES[config.model_type](config, **kwargs)


def _pretrained_config(name_or_path: str, kwargs: dict) -> tuple[str, PretrainedConfig, dict]:
    kwargs = refuse_remote_code(kwargs)
    name_or_path = resolve_model_reference(name_or_path)
    return name_or_path, auto_from_pretrained(AutoConfig, name_or_path, **kwargs), kwargs


def load_vision_backbone(name_or_path: str, **kwargs) -> PreTrainedModel:
    """A pretrained vision backbone from a Hub id, a folder or a package reference, through its concrete class."""
    name_or_path, config, kwargs = _pretrained_config(name_or_path, kwargs)
    check_model_type(config.model_type, "vision backbone")
    return VISION_CLASSES[config.model_type].from_pretrained(name_or_path, **_backbone_kwargs(config.model_type),
                                                             **kwargs)


def build_text_encoder(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised text encoder for ``config``."""
    check_model_type(config.model_type, "text encoder")
    return TEXT_CLASSES[config.model_type](config)


def load_text_encoder(name_or_path: str, **kwargs) -> PreTrainedModel:
    """A pretrained text encoder from a Hub id, a folder or a package reference (a full CLIP checkpoint gives its
    text tower)."""
    name_or_path, config, kwargs = _pretrained_config(name_or_path, kwargs)
    model_type = "clip_text_model" if config.model_type == "clip" else config.model_type
    check_model_type(model_type, "text encoder")
    return TEXT_CLASSES[model_type].from_pretrained(name_or_path, **kwargs)


class VisionFeatureExtractor(nn.Module):
    """Runs a vision backbone and returns four feature maps at strides 4, 8, 16 and 32: the four stages of a
    hierarchical backbone, or four hidden states of a ViT-family one, their prefix (CLS) tokens dropped, reshaped to
    ``(batch, dim, H/patch, W/patch)`` and resampled bilinearly to the four strides."""

    def __init__(self, backbone: PreTrainedModel, vit_feature_layers: list[int] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.model_type = backbone.config.model_type
        self.is_hierarchical = self.model_type in HIERARCHICAL_VISION_TYPES
        if self.is_hierarchical:
            self.channels = list(backbone.channels)
        else:
            num_layers = backbone.config.num_hidden_layers
            default = [max(1, round(num_layers * k / 4)) for k in (1, 2, 3, 4)]
            self.feature_layers = list(vit_feature_layers or default)
            self.channels = [backbone.config.hidden_size] * 4

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        if self.is_hierarchical:
            # (batch, C_i, H / stride_i, W / stride_i) for strides 4, 8, 16, 32
            return list(self.backbone(pixel_values).feature_maps)
        extra = {"interpolate_pos_encoding": True} if self.model_type == "vit" else {}
        hidden_states = self.backbone(pixel_values, output_hidden_states=True, **extra).hidden_states
        patch = self.backbone.config.patch_size
        grid_h, grid_w = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
        maps = []
        for index, stride in zip(self.feature_layers, FEATURE_STRIDES):
            tokens = hidden_states[index][:, -grid_h * grid_w :]  # drop CLS: (batch, h*w, dim)
            fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)
            size = (pixel_values.shape[-2] // stride, pixel_values.shape[-1] // stride)
            maps.append(F.interpolate(fmap, size=size, mode="bilinear", align_corners=False))
        return maps
