"""Language-guided scale selection: softmax weights over the extractor's branches, per channel, from the
proxies' mean (docs/method.md); uniform weights when switched off (ablation).
"""

from __future__ import annotations

import torch
from torch import nn


def mix_branches(branches: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """`sum_i weights[:, i] * branches[i]`: branches `(batch, r, H, W)`, weights `(batch, n_branches, r)` ->
    `(batch, H, W, r)`."""
    per_branch = weights.view(*weights.shape, 1, 1).unbind(1)  # n_branches x (batch, r, 1, 1)
    mixed = branches[0] * per_branch[0]
    for branch, weight in zip(branches[1:], per_branch[1:]):
        mixed = torch.addcmul(mixed, branch, weight)
    return mixed.permute(0, 2, 3, 1)


class LanguageGuidedScaleSelection(nn.Module):
    """Proxies -> softmax weights over the `num_branches` branches, per channel (`r`) -> weighted sum of them."""

    def __init__(self, channels: int, num_branches: int) -> None:
        super().__init__()
        self.num_branches = num_branches
        self.to_logits = nn.Linear(channels, num_branches * channels)

    def forward(self, branches: list[torch.Tensor], proxies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branches `(batch, r, H, W)` and projected proxies `(batch, num_queries, r)` -> the mixed features
        `(batch, H, W, r)` and the scale weights `(batch, n_branches, r)`."""
        batch, channels = proxies.shape[0], proxies.shape[-1]
        logits = self.to_logits(proxies.mean(dim=1)).view(batch, self.num_branches, channels)
        weights = logits.softmax(dim=1)  # (batch, n_branches, r), sums to 1 over branches
        return mix_branches(branches, weights), weights


def uniform_scale_selection(branches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ablation: the branches `(batch, r, H, W)` averaged, as `(batch, H, W, r)`, and the weights
    `(batch, n_branches, r)` that this amounts to."""
    batch, channels = branches[0].shape[:2]
    weights = branches[0].new_full((batch, len(branches), channels), 1.0 / len(branches))
    return mix_branches(branches, weights), weights
