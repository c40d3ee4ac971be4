"""Multi-scale dense extractor: parallel depthwise branches at growing receptive fields, densely connected.

Paper: a *multi-scale dense extractor* captures objects of very different sizes (remote-sensing targets range from a
car to an airport). Branch `i` is a depthwise `k_i x k_i` convolution with dilation `d_i` (receptive field
`d_i * (k_i - 1) + 1`) followed by GELU. As in DenseASPP, each branch is fed the input plus the outputs of all
previous branches (a sum, which keeps the width at `r` and the cost low), so later branches see progressively larger,
composed receptive fields. All branches are returned; the scale selection decides how to mix them.

Features are channels-last, `(batch, H, W, r)`, like the token sequences of transformer backbones, so that no
layout copies are needed around the adapter (the convolutions run on a channels-last view).
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
        """`(batch, H, W, r)` -> one `(batch, H, W, r)` output per branch."""
        outputs = []
        dense_input = x
        for branch in self.branches:
            # (batch, r, H, W) views of channels-last memory: the convolution runs channels-last, without copies
            out = self.act(branch(dense_input.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
            outputs.append(out)
            dense_input = dense_input + out  # DenseASPP: the next branch sees the input and every earlier branch
        return outputs
