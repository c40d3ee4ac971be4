"""The pretext model: a Swin backbone with a light decoder that predicts dense scene labels and/or masked pixels.

Only the backbone is kept. Its per-stage output norms stay frozen at their initial identity and are saved with it, so
it loads back as a `SwinBackbone` with nothing missing and the same features as before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import SwinBackbone, SwinConfig

from ..modeling.configuration import STAGE_NAMES
from .labels import COLOUR_CLASSES, IGNORE, REGION_CLASSES, SIZE_CLASSES

PRETEXTS = ("dense", "mim", "dense+mim")
"""``dense``: scene labels from the clean image; ``mim``: pixels of masked blocks; ``dense+mim``: both, the labels
predicted from the masked image."""


class PretextModel(nn.Module):
    """``SwinBackbone`` (of ``vision_config``) + an FPN-like decoder at stride 4, ``decoder_dim`` channels wide, with a
    head per target of ``pretext`` (one of `PRETEXTS`)."""

    def __init__(self, vision_config: SwinConfig, pretext: str = "dense", decoder_dim: int = 64) -> None:
        super().__init__()
        if pretext not in PRETEXTS:
            raise ValueError(f"`pretext` must be one of {', '.join(PRETEXTS)}, got {pretext!r}.")
        self.pretext = pretext
        vision_config.out_features = list(STAGE_NAMES)
        self.backbone = SwinBackbone(vision_config)
        for norm in self.backbone.hidden_states_norms.values():
            norm.requires_grad_(False)
        self.lateral = nn.ModuleList(nn.Conv2d(c, decoder_dim, 1) for c in self.backbone.channels)
        self.fuse = nn.Sequential(nn.Conv2d(decoder_dim, decoder_dim, 3, padding=1), nn.GELU())
        self.uses_labels = pretext in ("dense", "dense+mim")
        self.uses_pixels = pretext in ("mim", "dense+mim")
        self.label_sizes = (len(REGION_CLASSES), len(COLOUR_CLASSES), len(SIZE_CLASSES))
        self.label_head = nn.Conv2d(decoder_dim, sum(self.label_sizes), 1) if self.uses_labels else None
        self.pixel_head = nn.Conv2d(decoder_dim, 3 * 16, 1) if self.uses_pixels else None  # 4x4 pixels per cell

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """``pixel_values`` ``(B, 3, H, W)`` -> ``{"region", "colour", "size"}`` logits ``(B, classes, H, W)``
        and/or ``"pixels"`` ``(B, 3, H, W)``."""
        maps = self.backbone(pixel_values).feature_maps  # (B, C_i, H / 4 / 2**i, W / 4 / 2**i)
        size = maps[0].shape[-2:]
        fused = sum(
            F.interpolate(lateral(m), size=size, mode="bilinear", align_corners=False)
            for lateral, m in zip(self.lateral, maps)
        )
        fused = self.fuse(fused)  # (B, D, H / 4, W / 4)
        out = {}
        if self.label_head is not None:
            logits = F.interpolate(self.label_head(fused), size=pixel_values.shape[-2:], mode="bilinear",
                                   align_corners=False)
            out.update(zip(("region", "colour", "size"), logits.split(self.label_sizes, dim=1)))
        if self.pixel_head is not None:
            out["pixels"] = F.pixel_shuffle(self.pixel_head(fused), 4)  # (B, 3, H, W)
        return out


def mask_blocks(pixel_values: torch.Tensor, generator: torch.Generator, block: int = 16,
                ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank a random ``ratio`` of ``block``-pixel squares (to 0, the normalised mean). Returns ``(masked pixel
    values, (B, 1, H, W) float mask of the blanked pixels)``."""
    batch, _, height, width = pixel_values.shape
    grid = torch.rand(batch, 1, height // block, width // block, generator=generator) < ratio
    mask = grid.float().repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    return pixel_values * (1 - mask), mask


def pretext_losses(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                   pixel_values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy per label map (ignoring `IGNORE`), and L1 on the masked pixels."""
    losses = {}
    for name in ("region", "colour", "size"):
        if name in outputs and (labels[name] != IGNORE).any():
            losses[name] = F.cross_entropy(outputs[name], labels[name], ignore_index=IGNORE)
    if "pixels" in outputs:
        error = (outputs["pixels"] - pixel_values).abs() * mask
        losses["pixels"] = error.sum() / (mask.sum() * pixel_values.shape[1]).clamp_min(1)
    return losses
