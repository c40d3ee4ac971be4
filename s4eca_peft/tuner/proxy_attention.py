"""Pixel-to-proxy attention: each pixel, from its features and its place in the image, attends over the language
proxies and the attended proxy content is added to it (docs/method.md), so the adapter writes language into the
features instead of only gating them.
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_places(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y) of every pixel in [-1, 1]: ``(height, width, 2)``."""
    ys = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


class PixelProxyAttention(nn.Module):
    """Pixels (features and (x, y)) query the proxies; the softmax-weighted proxy values are added to the pixels.

    Args:
        channels: bottleneck width `r` (of the pixels and of the projected proxies).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Linear(channels + 2, channels)
        self.value = nn.Linear(channels, channels)

    def forward(self, features: torch.Tensor, proxies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            features: `(batch, H, W, r)` pixels (channels-last).
            proxies: `(batch, num_queries, r)` projected language proxies.

        Returns:
            The pixels with the attended proxies added `(batch, H, W, r)`, and the attention
            `(batch, H, W, num_queries)`.
        """
        batch, height, width, channels = features.shape
        places = pixel_places(height, width, features).expand(batch, -1, -1, -1)
        queries = self.query(torch.cat([features, places], dim=-1)).reshape(batch, height * width, channels)
        attention = torch.bmm(queries, proxies.transpose(1, 2)).div(channels**0.5).softmax(dim=-1)  # (b, HW, Q)
        attended = torch.bmm(attention, self.value(proxies)).view(batch, height, width, channels)
        return features + attended, attention.view(batch, height, width, -1)
