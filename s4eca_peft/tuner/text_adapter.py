"""Text adapter: learnable queries distil *language proxies* from the word-level features (docs/method.md).

With `text_feedback` the cross-attention output, averaged over the queries, is added back to every word feature
through a zero-initialised linear map; without it the text features are never altered.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TextProxyAdapter(nn.Module):
    """Learnable queries -> multi-head cross-attention over words -> language proxies.

    `text_dim` is the width of the words and the proxies, `bottleneck_size` that of the attention; `feedback` builds
    the projection of the words' update, zero-initialised with `init_weights`.
    """

    def __init__(self, text_dim: int, num_queries: int, bottleneck_size: int, num_heads: int, feedback: bool = True,
                 init_weights: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.queries = nn.Parameter(torch.randn(num_queries, text_dim))  # unit scale, like DETR's query embeddings
        self.q_proj = nn.Linear(text_dim, bottleneck_size)
        self.k_proj = nn.Linear(text_dim, bottleneck_size, bias=False)  # a key bias cannot change the attention
        self.v_proj = nn.Linear(text_dim, bottleneck_size)
        self.out_proj = nn.Linear(bottleneck_size, text_dim)
        self.norm = nn.LayerNorm(text_dim)
        self.feedback = nn.Linear(bottleneck_size, text_dim) if feedback else None
        if self.feedback is not None and init_weights:
            nn.init.zeros_(self.feedback.weight)
            nn.init.zeros_(self.feedback.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, words: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Word features `(batch, length, text_dim)`, their padding mask `(batch, length)` (`True` for real words,
        `None` when all are) and the proxies of an earlier text adapter of this forward that this one refines ->
        language proxies `(batch, num_queries, text_dim)` and the words' update `(batch, 1, text_dim)` (`None`
        without feedback)."""
        batch = words.shape[0]
        queries = self.queries.unsqueeze(0).expand(batch, -1, -1)  # (batch, Q, text_dim)
        if previous is not None:
            queries = queries + previous
        q = self._heads(self.q_proj(queries))  # (batch, heads, Q, d)
        k = self._heads(self.k_proj(words))  # (batch, heads, L, d)
        v = self._heads(self.v_proj(words))
        attn_mask = None
        if key_padding_mask is not None:
            # a row without any real word would give NaNs: let it attend everywhere instead
            key_padding_mask = key_padding_mask | ~key_padding_mask.any(-1, keepdim=True)
            attn_mask = key_padding_mask[:, None, None, :]  # (batch, 1, 1, L), True = attend
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (batch, heads, Q, d)
        attended = attended.transpose(1, 2).reshape(batch, queries.shape[1], -1)  # (batch, Q, bottleneck)
        proxies = self.norm(queries + self.out_proj(attended))
        update = self.feedback(attended.mean(1)).unsqueeze(1) if self.feedback is not None else None
        return proxies, update
