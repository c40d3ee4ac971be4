"""Object ranks from a candidate mask: what the head's rank kernel weighs."""

from __future__ import annotations

import torch

from s4eca_peft.modeling.ranks import RANK_SIDES, connected_components, object_ranks


def three_objects() -> torch.Tensor:
    mask = torch.zeros(2, 8, 12, dtype=torch.bool)  # the second image has no candidates
    mask[0, 1:3, 1:3] = True  # upper left
    mask[0, 5:7, 5:7] = True  # lower middle
    mask[0, 2:4, 9:11] = True  # right, a little lower than the first
    mask[0, 7, 0] = True  # one stray cell: not an object
    return mask


def test_each_connected_region_gets_one_label():
    labels = connected_components(three_objects())
    assert labels[1].eq(0).all()
    regions = [labels[0, 1:3, 1:3], labels[0, 5:7, 5:7], labels[0, 2:4, 9:11], labels[0, 7:8, 0:1]]
    assert all(region.unique().numel() == 1 and region[0, 0] > 0 for region in regions)
    assert len({int(region[0, 0]) for region in regions}) == 4
    assert int(labels[0].gt(0).sum()) == 13
    diagonal = torch.zeros(1, 4, 4, dtype=torch.bool)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = diagonal[0, 2, 2] = True  # corners touch: one 8-connected region
    assert connected_components(diagonal)[0][diagonal[0]].unique().numel() == 1


def test_objects_are_ranked_by_centroid_from_each_side():
    ranks = object_ranks(three_objects())
    assert ranks.shape == (2, len(RANK_SIDES), 8, 12)
    expected = {"left": (1, 2, 3), "right": (3, 2, 1), "top": (1, 3, 2), "bottom": (3, 1, 2)}
    for side, (upper_left, lower_middle, right) in expected.items():
        channel = ranks[0, RANK_SIDES.index(side)]
        assert channel[1:3, 1:3].eq(upper_left).all() and channel[5:7, 5:7].eq(lower_middle).all()
        assert channel[2:4, 9:11].eq(right).all(), side
        assert channel[7, 0] == 0 and int(channel.gt(0).sum()) == 12  # the stray cell and the background: no rank
    assert ranks[1].eq(0).all()
