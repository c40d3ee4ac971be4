"""Multi-scale dense extractor: parallel depthwise dilated branches, each fed the input plus the earlier
branches (DenseASPP; docs/method.md)."""

from __future__ import annotations

import torch
from torch import nn


class MultiScaleDenseExtractor(nn.Module):
    """Densely connected dilated depthwise branches over the `channels` (`r`) of the bottleneck, one branch per
    odd kernel size and dilation."""

    def __init__(self, channels: int, kernel_sizes: list[int], dilations: list[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=d * (k - 1) // 2, dilation=d, groups=channels)
            for k, d in zip(kernel_sizes, dilations)
        )
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`(batch, H, W, r)` -> one `(batch, r, H, W)` output per branch (views of channels-last memory)."""
        dense_input = x.permute(0, 3, 1, 2)  # (batch, r, H, W) view: the convolutions run channels-last
        outputs = []
        for index, branch in enumerate(self.branches):
            outputs.append(self.act(branch(dense_input)))
            if index + 1 < len(self.branches):
                dense_input = dense_input + outputs[-1]  # DenseASPP: the next branch sees all before it
        return outputs
