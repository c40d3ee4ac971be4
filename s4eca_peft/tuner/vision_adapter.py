"""Vision adapter: bottleneck -> multi-scale dense extractor -> scale selection -> spatial selection -> up
(docs/method.md). Channels-last `(batch, H, W, C)`, the layout transformer blocks give as a view of their tokens; the
zero-initialised up-projection makes the adapted model start equal to the base model.
"""

from __future__ import annotations

import torch
from torch import nn

from .dense_extractor import MultiScaleDenseExtractor
from .proxy_attention import PixelProxyAttention
from .scale_selection import LanguageGuidedScaleSelection, uniform_scale_selection
from .spatial_selection import LanguageGuidedSpatialSelection


class S4ECAVisionAdapter(nn.Module):
    """The per-block S4ECA vision adapter for a block output of `channels` (`C`), at width `bottleneck_size` (`r`);
    the switches are `S4ECAConfig`'s."""

    def __init__(self, channels: int, text_dim: int, bottleneck_size: int, kernel_sizes: list[int],
                 dilations: list[int], scale_selection: bool = True, spatial_selection: bool = True,
                 proxy_attention: bool = False, init_weights: bool = True) -> None:
        super().__init__()
        r = bottleneck_size
        self.text_dim = text_dim
        self.down = nn.Linear(channels, r)
        self.act = nn.GELU()
        self.extractor = MultiScaleDenseExtractor(r, kernel_sizes, dilations)
        uses_language = scale_selection or spatial_selection or proxy_attention
        # proxies -> bottleneck space, shared by both selections; absent (not left untrained) when both are off
        self.proxy_proj = nn.Linear(text_dim, r) if uses_language else None
        self.scale_selection = LanguageGuidedScaleSelection(r, len(dilations)) if scale_selection else None
        self.spatial_selection = LanguageGuidedSpatialSelection(r) if spatial_selection else None
        self.proxy_attention = PixelProxyAttention(r) if proxy_attention else None
        self.up = nn.Linear(r, channels)
        if init_weights:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, features: torch.Tensor,
                proxies: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Block output `(batch, H, W, C)` and proxies `(batch, num_queries, text_dim)` (`None` when nothing reads
        them) -> the residual update `(batch, H, W, C)` and the selection maps
        `{"scale_weights": (batch, n_branches, r), "spatial_gate": (batch, 1, H, W)}`."""
        x = self.act(self.down(features))  # (batch, H, W, r)
        branches = self.extractor(x)  # n_branches x (batch, r, H, W), channels-last memory
        projected = self.proxy_proj(proxies) if self.proxy_proj is not None else None  # (batch, Q, r)
        if self.scale_selection is not None:
            x, scale_weights = self.scale_selection(branches, projected)
        else:
            x, scale_weights = uniform_scale_selection(branches)
        if self.spatial_selection is not None:
            x, gate = self.spatial_selection(x, projected)
        else:
            gate = x.new_ones(*x.shape[:3], 1)
        if self.proxy_attention is not None:
            x, _ = self.proxy_attention(x, projected)
        return self.up(x), {"scale_weights": scale_weights, "spatial_gate": gate.permute(0, 3, 1, 2)}
