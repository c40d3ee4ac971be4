"""Language-guided spatial selection: a sigmoid gate from each pixel's best cosine similarity to the proxies
(docs/method.md); no gate when switched off (ablation).
"""

from __future__ import annotations

import torch
from torch import nn

_EPS = 1e-12  # as `F.normalize`


class LanguageGuidedSpatialSelection(nn.Module):
    """Pixel-proxy similarity -> sigmoid spatial gate, at the bottleneck width `channels` (`r`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pixel_proj = nn.Linear(channels, channels)
        self.temperature = nn.Parameter(torch.tensor(4.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, features: torch.Tensor, proxies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale-selected features `(batch, H, W, r)` and projected proxies `(batch, num_queries, r)` -> the gated
        features `(batch, H, W, r)` and the gate `(batch, H, W, 1)` in (0, 1)."""
        batch, height, width, channels = features.shape
        pixels = self.pixel_proj(features).reshape(batch, height * width, channels)
        keys = proxies / proxies.norm(dim=-1, keepdim=True).clamp_min(_EPS)  # unit proxies, (batch, Q, r)
        # the best cosine over proxies: the pixel's norm is the same for every proxy, so divide the max by it
        best = torch.bmm(pixels, keys.transpose(1, 2)).amax(dim=-1, keepdim=True)  # (batch, H*W, 1)
        best = best / pixels.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        gate = torch.sigmoid(self.temperature * best + self.bias).view(batch, height, width, 1)
        return features * gate, gate
