"""Ranks of candidate objects along the image axes, for expressions that count ("the second tank from the left").

The head marks candidate pixels (those its sentence-conditioned logits rate at least half as likely as its best
pixel), groups them into 8-connected objects, and gives every pixel of an object that object's rank by centroid,
counted from each side of the image. The ranks are integers: no gradient flows through them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

RANK_SIDES = ("left", "right", "top", "bottom")
"""The sides ranks are counted from, in the order of `object_ranks`' channels."""
MIN_OBJECT_CELLS = 2
"""Connected candidate regions smaller than this (in cells of the map) are not counted as objects."""


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Labels of the 8-connected components of ``mask`` ``(batch, height, width)``: ``0`` outside it, and one positive
    label per component (the largest flat index + 1 among its cells), spread by max-pooling until nothing changes."""
    batch, height, width = mask.shape
    inside = mask.to(torch.float32).unsqueeze(1)
    labels = torch.arange(1, height * width + 1, device=mask.device, dtype=torch.float32).view(1, 1, height, width)
    labels = labels * inside
    for _ in range(height * width):  # each pass spreads a label by one cell; a component settles within its length
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * inside
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels.squeeze(1).long()


def object_ranks(mask: torch.Tensor, min_cells: int = MIN_OBJECT_CELLS) -> torch.Tensor:
    """For every cell of an object of ``mask`` ``(batch, height, width)``, the object's rank among the image's objects
    (1 = first) by centroid, counted from the left, right, top and bottom: ``(batch, 4, height, width)`` long, ``0``
    outside the objects. Components of fewer than ``min_cells`` cells are left out (rank 0) and not counted."""
    batch, height, width = mask.shape
    labels = connected_components(mask).view(batch, -1)  # (batch, cells); label 0 = outside
    slots = height * width + 1
    ys, xs = torch.meshgrid(torch.arange(height, device=mask.device, dtype=torch.float32),
                            torch.arange(width, device=mask.device, dtype=torch.float32), indexing="ij")
    per_label = torch.zeros(3, batch, slots, device=mask.device)
    for row, values in zip(per_label, (torch.ones_like(xs), xs, ys)):
        row.scatter_add_(1, labels, values.reshape(1, -1).expand(batch, -1))
    counts, sum_x, sum_y = per_label
    objects = counts >= min_cells
    objects[:, 0] = False
    ranks = []
    for total, sign in ((sum_x, 1.0), (sum_x, -1.0), (sum_y, 1.0), (sum_y, -1.0)):
        centroid = sign * total / counts.clamp(min=1)
        order = centroid.masked_fill(~objects, float("inf")).argsort(dim=1)  # objects first, by centroid
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(1, slots + 1, device=mask.device).expand(
            batch, -1))
        ranks.append((rank * objects).gather(1, labels))
    return torch.stack(ranks, dim=1).view(batch, len(RANK_SIDES), height, width)
