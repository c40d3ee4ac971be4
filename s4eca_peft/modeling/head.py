"""Light multi-scale segmentation head, conditioned on the sentence or (``reads_sentence=False``) on nothing but the
features."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from s4eca_peft.modeling.ranks import RANK_SIDES, object_ranks

MAX_RANK = 3
"""Ranks the rank kernel weighs (1 to 3 from each side: "the second tank from the left", "the third pool from the
top"); objects further in get no rank term."""
CANDIDATE_SHARE = 0.5
"""The rank kernel's candidate pixels: those the logits rate at least this share as likely as their best pixel."""
RANK_WORD_POOLS = 2
"""With ``rank_words``: attention pools over the words the rank kernel reads (one can settle on the count, "second",
one on the side, "from the left")."""


def rank_candidates(logits: torch.Tensor, share: float = CANDIDATE_SHARE) -> torch.Tensor:
    """The candidate pixels ``(batch, H, W)`` bool the rank kernel counts objects in: those the mask ``logits``
    ``(batch, 1, H, W)`` rate at least ``share`` as likely as their best pixel (detached: no gradient flows through
    the candidates)."""
    probability = logits.detach().float().sigmoid().squeeze(1)
    return probability >= share * probability.amax(dim=(-2, -1), keepdim=True)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, channels), num_channels=channels)


def coordinate_channels(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y) coordinates in [-1, 1]: ``(batch, 2, height, width)``. Expressions name positions ("on the
    left"); convolutions alone cannot see where they are."""
    ys = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)


class SegmentationHead(nn.Module):
    """Top-down feature pyramid over four stages, modulated by the sentence at every scale.

    Steps: 1x1 lateral projections to ``decoder_dim`` -> sentence FiLM (scale, shift) on each level ->
    top-down fusion to stride 4 -> concatenation of coordinate channels -> 3x3 fusion -> mask logits from a
    static 1x1 classifier plus a sentence-generated dynamic 1x1 kernel (and, with ``place_kernel``, a
    sentence-generated kernel over the place terms x, y, x², y²; with ``rank_kernel``, one over the ranks of the
    candidate objects counted from each side, `modeling.ranks`). With ``category_map`` the rank kernel counts the
    candidates of a second map of the same form, trained on every object of the named category
    (`category_logits`), instead of the mask's own. With ``rank_words`` the rank kernel's weights come from
    `RANK_WORD_POOLS` learned attention pools over the words instead of from the mean sentence feature. With
    ``rank_product`` each weight also gets the product of a side weight and a count weight, both from the sentence, so
    that "the second from the left" can weigh rank two from the left alone (a sum of a side and a count term cannot
    tell it from the second from the right). With
    ``reads_sentence=False`` the FiLM and the dynamic kernels are absent and the head decodes the features alone.
    """

    def __init__(self, in_channels: list[int], text_dim: int, decoder_dim: int = 128,
                 reads_sentence: bool = True, place_kernel: bool = False, rank_kernel: bool = False,
                 category_map: bool = False, rank_words: bool = False, rank_product: bool = False) -> None:
        super().__init__()
        for name, wanted in (("category_map", category_map), ("rank_words", rank_words),
                             ("rank_product", rank_product)):
            if wanted and not (reads_sentence and rank_kernel):
                raise ValueError(f"`{name}` is part of the rank kernel: it needs `rank_kernel` and `reads_sentence`.")
        self.reads_sentence = reads_sentence
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, decoder_dim, 1, bias=False), _norm(decoder_dim)) for c in in_channels
        )
        self.film = nn.Linear(text_dim, 2 * decoder_dim * len(in_channels)) if reads_sentence else None
        self.fuse = nn.Sequential(
            nn.Conv2d(decoder_dim + 2, decoder_dim, 3, padding=1, bias=False), _norm(decoder_dim), nn.GELU(),
            nn.Conv2d(decoder_dim, decoder_dim, 3, padding=1, bias=False), _norm(decoder_dim), nn.GELU(),
        )
        self.dynamic_kernel = nn.Linear(text_dim, decoder_dim + 1) if reads_sentence else None
        self.place_kernel = nn.Linear(text_dim, 4) if reads_sentence and place_kernel else None
        rank_reads = text_dim * (RANK_WORD_POOLS if rank_words else 1)
        self.rank_kernel = nn.Linear(rank_reads, len(RANK_SIDES) * MAX_RANK) if reads_sentence and rank_kernel else None
        self.rank_word_scores = nn.Linear(text_dim, RANK_WORD_POOLS) if rank_words else None
        self.rank_sides = nn.Linear(rank_reads, len(RANK_SIDES)) if rank_product else None
        self.rank_counts = nn.Linear(rank_reads, MAX_RANK) if rank_product else None
        self.classifier = nn.Conv2d(decoder_dim, 1, 1)
        self.classifier.is_mask_classifier = True  # starts near the foreground prior, see `_init_weights`
        self.category_kernel = nn.Linear(text_dim, decoder_dim + 1) if category_map else None
        self.category_classifier = nn.Conv2d(decoder_dim, 1, 1) if category_map else None
        if category_map:
            self.category_classifier.is_mask_classifier = True
        self.decoder_dim = decoder_dim

    def forward(self, features: list[torch.Tensor], sentence: torch.Tensor, words: torch.Tensor | None = None,
                word_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``features``: four maps ``(batch, C_i, H/s_i, W/s_i)``; ``sentence``: ``(batch, text_dim)`` (read only when
        the head reads the sentence); ``words`` ``(batch, length, text_dim)`` and their ``word_mask`` ``(batch,
        length)`` (1 for a word, 0 for padding; read only with ``rank_words``). Returns mask logits ``(batch, 1, H/4,
        W/4)`` and, with ``category_map``, the category logits of the same shape (else None)."""
        batch = features[0].shape[0]
        film = self.film(sentence).view(batch, len(features), 2, -1, 1, 1) if self.reads_sentence else None
        fused = None
        for level in reversed(range(len(features))):
            x = self.lateral[level](features[level])
            if film is not None:
                x = x * (1 + film[:, level, 0]) + film[:, level, 1]  # sentence FiLM
            if fused is not None:
                x = x + F.interpolate(fused, size=x.shape[-2:], mode="bilinear", align_corners=False)
            fused = x
        height, width = fused.shape[-2:]
        places = coordinate_channels(batch, height, width, fused)  # (batch, 2, H, W)
        fused = self.fuse(torch.cat([fused, places], dim=1))
        if not self.reads_sentence:
            return self.classifier(fused), None
        static = self.classifier(fused)
        dynamic = self.sentence_map(fused, self.dynamic_kernel(sentence))
        category = None
        if self.category_kernel is not None:  # every object of the named category: the candidates to count
            category = self.category_classifier(fused) + self.sentence_map(fused, self.category_kernel(sentence))[:, None]
        if self.rank_kernel is not None:  # "the second tank from the left": sentence x rank of the candidates
            candidates = static + dynamic.unsqueeze(1) if category is None else category
            reads = sentence if self.rank_word_scores is None else self.pool_words(words, word_mask)
            ranked = torch.einsum("bchw,bc->bhw", self.rank_terms(candidates), self.rank_weights(reads))
        if self.place_kernel is not None:  # "the leftmost tank": sentence x place, without going through `fuse`
            terms = torch.cat([places, places.square()], dim=1)  # (batch, 4, H, W): x, y, x², y²
            dynamic = dynamic + torch.einsum("bchw,bc->bhw", terms, self.place_kernel(sentence))
        if self.rank_kernel is not None:
            dynamic = dynamic + ranked
        return static + dynamic.unsqueeze(1), category

    def sentence_map(self, fused: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """A sentence-generated 1x1 kernel ``(batch, decoder_dim + 1)`` (weights, then bias) applied to the fused
        features ``(batch, decoder_dim, H, W)``: ``(batch, H, W)``."""
        return torch.einsum("bchw,bc->bhw", fused, kernel[:, :-1]) / self.decoder_dim**0.5 + kernel[:, -1, None, None]

    def rank_weights(self, reads: torch.Tensor) -> torch.Tensor:
        """The rank kernel's weights ``(batch, 4 * MAX_RANK)`` from what it reads ``(batch, in_features)``: a linear
        map and, with ``rank_product``, the outer product of a weight per side and a weight per count."""
        weights = self.rank_kernel(reads)
        if self.rank_sides is None:
            return weights
        return weights + (self.rank_sides(reads)[:, :, None] * self.rank_counts(reads)[:, None, :]).flatten(1)

    def pool_words(self, words: torch.Tensor | None, word_mask: torch.Tensor | None) -> torch.Tensor:
        """`RANK_WORD_POOLS` attention pools over the ``words`` ``(batch, length, text_dim)`` (each word scored by
        `rank_word_scores`, padding left out by ``word_mask``), concatenated: ``(batch, RANK_WORD_POOLS *
        text_dim)``."""
        if words is None:
            raise ValueError("A head with `rank_words` needs the `words` (batch, length, text_dim).")
        scores = self.rank_word_scores(words).float()  # (batch, length, pools)
        if word_mask is not None:
            scores = scores.masked_fill(~word_mask.bool()[..., None], float("-inf"))
        weights = scores.softmax(dim=1).to(words.dtype)
        return torch.einsum("blp,bld->bpd", weights, words).flatten(1)

    @staticmethod
    def rank_terms(logits: torch.Tensor) -> torch.Tensor:
        """Indicators ``(batch, 4 * MAX_RANK, H, W)`` of each pixel's object rank (1 to `MAX_RANK`) from the left,
        right, top and bottom, the objects being the connected regions of `rank_candidates` of the ``logits``
        ``(batch, 1, H, W)`` (no gradient flows into the logits through them)."""
        ranks = object_ranks(rank_candidates(logits))  # (batch, 4, H, W), 0 outside the candidates
        terms = torch.stack([ranks == rank for rank in range(1, MAX_RANK + 1)], dim=2)  # (batch, 4, MAX_RANK, H, W)
        return terms.flatten(1, 2).to(logits.dtype)
