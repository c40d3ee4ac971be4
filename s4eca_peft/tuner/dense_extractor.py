"""Multi-scale dense extractor: parallel depthwise branches at growing receptive fields, densely connected.

Paper: a *multi-scale dense extractor* captures objects of very different sizes (remote-sensing targets range from a
car to an airport). Branch `i` is a depthwise `k_i x k_i` convolution with dilation `d_i` (receptive field
`d_i * (k_i - 1) + 1`) followed by GELU. As in DenseASPP, each branch is fed the input plus the outputs of all
previous branches (a sum, which keeps the width at `r` and the cost low), so later branches see progressively larger,
composed receptive fields. All branches are returned; the scale selection decides how to mix them.

The input is channels-last, `(batch, H, W, r)`, like the token sequences of transformer backbones. It is viewed once
as `(batch, r, H, W)` (channels-last memory, so the convolutions run without layout copies) and the branches are
returned in that layout, which the scale selection mixes in: no layout change per branch.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiScaleDenseExtractor(nn.Module):
    """Densely connected dilated depthwise branches.

    Args:
        channels: width `r` of the bottleneck features.
        kernel_sizes: odd kernel size of each branch.
        dilations: dilation of each branch (same length as `kernel_sizes`).
    """

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
                dense_input = dense_input + outputs[-1]  # DenseASPP: the next branch sees the input and every earlier one
        return outputs
