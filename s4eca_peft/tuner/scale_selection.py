"""Language-guided scale selection: the expression decides, per channel, which receptive field to use.

Paper: *semantic-driven scale selection* weights the extractor's scales with the language, so "the large lake"
and "the small car" draw on different receptive fields. The proxies (already projected to the bottleneck width `r`)
are averaged into one expression vector, a linear layer maps it to `n_branches x r` logits, and a softmax over the
branches gives per-channel weights `(batch, n_branches, r)` that mix the branch outputs. With the switch off
(ablation), the branches are averaged uniformly.
"""

from __future__ import annotations

import torch
from torch import nn


class LanguageGuidedScaleSelection(nn.Module):
    """Proxies -> softmax weights over branches, per channel -> weighted sum of the branches.

    Args:
        channels: bottleneck width `r`.
        num_branches: number of extractor branches.
    """

    def __init__(self, channels: int, num_branches: int) -> None:
        super().__init__()
        self.num_branches = num_branches
        self.to_logits = nn.Linear(channels, num_branches * channels)

    def forward(self, branches: list[torch.Tensor], proxies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            branches: the extractor's outputs, each `(batch, H, W, r)`.
            proxies: `(batch, num_queries, r)` projected language proxies.

        Returns:
            The mixed features `(batch, H, W, r)` and the scale weights `(batch, n_branches, r)`.
        """
        batch, channels = proxies.shape[0], proxies.shape[-1]
        logits = self.to_logits(proxies.mean(dim=1)).view(batch, self.num_branches, channels)
        weights = logits.softmax(dim=1)  # (batch, n_branches, r), sums to 1 over branches
        mixed = sum(branch * weights[:, i, None, None, :] for i, branch in enumerate(branches))
        return mixed, weights


def uniform_scale_selection(branches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ablation: the branches averaged, and the weights `(batch, n_branches, r)` that this amounts to."""
    batch, channels = branches[0].shape[0], branches[0].shape[-1]
    weights = branches[0].new_full((batch, len(branches), channels), 1.0 / len(branches))
    return sum(branches) / len(branches), weights
