"""Synthetic aerial-like scenes whose expression singles out one object among others of its category: textured
ground, sometimes roads and trees, two to four objects of the target's category and others around them. The
expression names the category and one rule of its family (`FAMILIES`; the table in docs/data.md), so the category
alone never suffices. Scenes are drawn from ``numpy.random.default_rng((seed, index))``, so distinct seeds give
disjoint streams.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import datasets
import numpy as np
import torch
from PIL import Image

from .masks import encode_mask
from .records import records_to_dataset
from .validation import SPLITS

SeedLike = Union[int, Sequence[int], np.random.Generator]

CATEGORIES = ("vehicle", "storage tank", "building", "pool")
RELATIONS = ("colour", "size", "position", "road", "colour+position")
"""The five families of data version 1 (the target's own attributes, its extreme position, a road)."""
_RELATION_WEIGHTS = (0.25, 0.2, 0.25, 0.15, 0.15)
RELATIONAL_FAMILIES = ("anchor", "ordinal", "comparison")
"""Families whose rule needs a second object or an ordering of several."""
FAMILIES = RELATIONS + RELATIONAL_FAMILIES + ("image-position", "attributes")
"""Every expression family of data version 2 (see the module docstring)."""
_FAMILY_WEIGHTS = (0.08, 0.07, 0.08, 0.06, 0.06, 0.22, 0.15, 0.12, 0.08, 0.08)
DATA_VERSION = 2
"""The default version of the generated scenes (1: the five families of `RELATIONS` only)."""
DATA_VERSIONS = (1, 2)
ANCHOR_MARGIN = 0.05
"""Clear gap (fraction of the image side) between a rule's boundary and the objects on either side of it."""
ORDINAL_GAP = 0.1
"""Least distance (fraction of the image side) along the axis between objects an ordinal ranks."""
IMAGE_REGIONS = ("upper left", "upper right", "lower left", "lower right", "centre")
RELATION_SIDES = {"left of": ("x", -1), "right of": ("x", 1), "above": ("y", -1), "below": ("y", 1)}
ANCHOR_RELATIONS = ("next to", *RELATION_SIDES)
_ANCHOR_WORDS = {
    "next to": ("next to", "beside", "nearest to", "closest to"), "above": ("above", "north of"),
    "left of": ("to the left of", "left of", "on the left of"), "below": ("below", "south of", "under"),
    "right of": ("to the right of", "right of", "on the right of"),
}
_ORDINALS = {2: "second", 3: "third"}
_ROAD_WORDS = {("h", True): ("above", "north of"), ("h", False): ("below", "south of"),
               ("v", True): ("to the left of", "west of"), ("v", False): ("to the right of", "east of")}
_REGION_WORDS = {"centre": ("in the centre of the image", "in the middle of the image")} | {
    f"{vertical} {side}": (f"in the {vertical} {side} of the image", f"in the {edge} {side} corner",
                           f"at the {edge} {side} of the image")
    for vertical, edge in (("upper", "top"), ("lower", "bottom")) for side in ("left", "right")
}
_NOUNS = {"vehicle": ("vehicle", "car"), "storage tank": ("storage tank", "tank", "oil tank"),
          "building": ("building", "house"), "pool": ("pool", "swimming pool")}
COLOURS = {
    "red": (200, 45, 40), "blue": (45, 80, 200), "white": (238, 238, 232), "black": (30, 30, 34),
    "yellow": (232, 200, 50), "gray": (128, 128, 132), "brown": (125, 82, 50), "green": (60, 150, 75),
    "turquoise": (64, 200, 200), "orange": (235, 130, 40),
}
_CATEGORY_COLOURS = {
    "vehicle": ("red", "blue", "white", "black", "yellow"), "storage tank": ("white", "gray", "green", "orange"),
    "building": ("red", "gray", "white", "brown", "blue"), "pool": ("blue", "turquoise", "green"),
}
# long side (diameter for tanks) as a fraction of the image side; the classes never overlap
_SIZES = {
    "vehicle": {"small": (0.07, 0.09), "large": (0.13, 0.16)},
    "storage tank": {"small": (0.07, 0.10), "large": (0.15, 0.19)},
    "building": {"small": (0.09, 0.12), "large": (0.17, 0.22)},
    "pool": {"small": (0.07, 0.09), "large": (0.13, 0.16)},
}
_GROUNDS = ((95, 120, 65), (150, 132, 98), (138, 138, 132), (186, 172, 138))
_SHAPE_OF = {"vehicle": "rect", "storage tank": "circle", "building": "rect", "pool": "rounded"}


@dataclass
class SceneObject:
    """One drawn object: centre and half extents in pixels, and its attributes."""

    category: str
    colour: str
    size: str  # "small" or "large"
    half_w: float
    half_h: float
    cx: float = 0.0
    cy: float = 0.0

    def box(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        return (self.cx - self.half_w - margin, self.cy - self.half_h - margin,
                self.cx + self.half_w + margin, self.cy + self.half_h + margin)


@dataclass
class SyntheticScene:
    """A rendered scene with its layout (``objects[target]`` is the referred object)."""

    image: Image.Image
    mask: np.ndarray
    expression: str
    category: str
    family: str
    objects: list[SceneObject] = field(default_factory=list)
    target: int = 0
    roads: list[tuple[str, float, float]] = field(default_factory=list)  # (axis "h"/"v", centre, half width)
    rule: dict[str, Any] = field(default_factory=dict)  # what the expression states (`scene_rules.ambiguity`)
    category_mask: np.ndarray | None = None  # every object of the target's category, the target among them


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _make_object(rng: np.random.Generator, category: str, colour: str, size: str, n: int) -> SceneObject:
    low, high = _SIZES[category][size]
    length = rng.uniform(low, high) * n
    width = (length if category == "storage tank" else 0.45 * length if category == "vehicle"
             else length / rng.uniform(1.0, 1.8))
    if rng.random() < 0.5:
        length, width = width, length
    return SceneObject(category, colour, size, half_w=length / 2, half_h=width / 2)


Sampled = tuple["_Layout", str, str, dict[str, Any], int]
"""A sampled layout: the layout, the expression, its family, its rule and the target's index in the layout."""


class _Layout:
    """Places objects without overlaps and off the roads; ``place`` returns False when no spot was found."""

    def __init__(self, n: int, roads: list[tuple[str, float, float]], rng: np.random.Generator) -> None:
        self.n, self.roads, self.rng = n, roads, rng
        self.margin = max(2.0, 0.025 * n)
        self.objects: list[SceneObject] = []

    def _free(self, obj: SceneObject) -> bool:
        x0, y0, x1, y1 = obj.box(self.margin)
        for axis, centre, half in self.roads:
            low, high = (y0, y1) if axis == "h" else (x0, x1)
            if high > centre - half and low < centre + half:
                return False
        for other in self.objects:
            a0, b0, a1, b1 = other.box()
            if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
                return False
        return True

    def place(self, obj: SceneObject, x_range: tuple[float, float] = (0, 1e9), y_range: tuple[float, float] = (0, 1e9),
              accept: Callable[[SceneObject], bool] | None = None) -> bool:
        x_low, x_high = max(x_range[0], obj.half_w + 1), min(x_range[1], self.n - obj.half_w - 1)
        y_low, y_high = max(y_range[0], obj.half_h + 1), min(y_range[1], self.n - obj.half_h - 1)
        if x_low > x_high or y_low > y_high:
            return False
        for _ in range(40):
            obj.cx, obj.cy = self.rng.uniform(x_low, x_high), self.rng.uniform(y_low, y_high)
            if self._free(obj) and (accept is None or accept(obj)):
                self.objects.append(obj)
                return True
        return False


def _position_words(axis: str, first: bool, count: int, noun: str, colour: str = "") -> list[str]:
    """Expressions for the extreme object along ``axis`` (``first``: smallest coordinate) among ``count``."""
    label = f"{colour} {noun}".strip()
    if axis == "x":
        side, most = ("left", "leftmost") if first else ("right", "rightmost")
        pair = [f"the {label} on the {side}", f"the {side} {label}"]
        many = [f"the {most} {label}", f"the {label} farthest to the {side}"]
    else:
        side, most, adjective = ("top", "topmost", "upper") if first else ("bottom", "bottommost", "lower")
        pair = [f"the {label} at the {side}", f"the {adjective} {label}"]
        many = [f"the {most} {label}", f"the {label} closest to the {side}"]
    return pair if count == 2 else many


def _split_ranges(rng: np.random.Generator, n: int, first: bool) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centre ranges along one axis for the target and the rest, a clear gap apart."""
    cut, gap = rng.uniform(0.35, 0.65) * n, 0.08 * n
    low, high = (0.0, cut - gap / 2), (cut + gap / 2, float(n))
    return (low, high) if first else (high, low)


def _scene_roads(rng: np.random.Generator, n: int, road_half: float) -> list[tuple[str, float, float]]:
    """Zero to two roads that no rule refers to."""
    count = int(rng.choice(3, p=(0.35, 0.45, 0.2)))
    axes = ["h", "v"] if count == 2 else [_pick(rng, "hv")] * count
    return [(axis, rng.uniform(0.2, 0.8) * n, road_half) for axis in axes]


def _add_distractors(layout: _Layout, rng: np.random.Generator, exclude: Sequence[str], low: int = 1) -> bool:
    """``low`` to three objects of the categories not in ``exclude``; False when one did not fit."""
    for _ in range(int(rng.integers(low, 4))):
        other = _pick(rng, [c for c in CATEGORIES if c not in exclude])
        colour, size = _pick(rng, _CATEGORY_COLOURS[other]), _pick(rng, ("small", "large"))
        if not layout.place(_make_object(rng, other, colour, size, n=layout.n)):
            return False
    return True


def _sample_layout(rng: np.random.Generator, n: int, version: int) -> Sampled | None:
    """Roads and objects with the expression, its family and rule, and the target's index (None if they did not
    fit). Version 1 draws exactly the scenes it always drew."""
    families, weights = (RELATIONS, _RELATION_WEIGHTS) if version == 1 else (FAMILIES, _FAMILY_WEIGHTS)
    family = families[int(rng.choice(len(families), p=weights))]
    category = _pick(rng, CATEGORIES)
    noun = _pick(rng, _NOUNS[category])
    if family in RELATIONS:
        return _attribute_layout(rng, n, family, category, noun)
    return _RELATIONAL_LAYOUTS[family](rng, n, category, noun)


def _attribute_layout(rng: np.random.Generator, n: int, relation: str, category: str, noun: str) -> Sampled | None:
    """The five families of version 1: a rule on the target's own attributes, its extreme position or a road."""
    palette = _CATEGORY_COLOURS[category]
    road_half = rng.uniform(0.035, 0.05) * n
    roads = ([(_pick(rng, "hv"), rng.uniform(0.35, 0.65) * n, road_half)] if relation == "road"
             else _scene_roads(rng, n, road_half))
    layout = _Layout(n, roads, rng)
    count = int(rng.integers(3 if relation == "colour+position" else 2, 5))
    sizes = [_pick(rng, ("small", "large")) for _ in range(count)]
    colours = [_pick(rng, palette) for _ in range(count)]
    anywhere = ((0.0, 1e9), (0.0, 1e9))
    ranges = [anywhere] * count

    if relation == "colour":
        colours[1:] = [_pick(rng, [c for c in palette if c != colours[0]]) for _ in range(count - 1)]
        expression = _pick(rng, [f"the {colours[0]} {noun}", f"the {noun} that is {colours[0]}"])
        rule = {"colour": colours[0]}
    elif relation == "size":
        sizes = [sizes[0]] + [("small" if sizes[0] == "large" else "large")] * (count - 1)
        words = ("large", "largest", "big", "biggest") if sizes[0] == "large" else ("small", "smallest", "little")
        expression = f"the {_pick(rng, words)} {noun}"
        rule = {"size": sizes[0]}
    elif relation in ("position", "colour+position"):
        axis, first = _pick(rng, "xy"), bool(rng.random() < 0.5)
        target_range, rest_range = _split_ranges(rng, n, first)
        contenders = count  # the objects the position rule ranks, target first
        colour = ""
        if relation == "colour+position":
            colour = colours[0]
            contenders = int(rng.integers(2, count))  # those sharing the target's colour; the rest go anywhere
            others = [c for c in palette if c != colour]
            colours = [colour] * contenders + [_pick(rng, others) for _ in range(count - contenders)]
        for i in range(contenders):
            span = target_range if i == 0 else rest_range
            ranges[i] = (span, anywhere[1]) if axis == "x" else (anywhere[0], span)
        expression = _pick(rng, _position_words(axis, first, contenders, noun, colour))
        rule = {"axis": axis, "first": first, "colour": colour or None}
    else:  # road
        expression, rule = _road_rule(rng, n, roads[0], noun, count, ranges)

    placed = all(layout.place(_make_object(rng, category, colours[i], sizes[i], n), *ranges[i]) for i in range(count))
    if not placed or not _add_distractors(layout, rng, (category,)):
        return None
    return layout, expression, relation, rule, 0


def _road_rule(rng: np.random.Generator, n: int, road: tuple[str, float, float], noun: str, count: int,
               ranges: list) -> tuple[str, dict[str, Any]]:
    """The target on one side of the road, the others on the other side (fills ``ranges``)."""
    axis, centre, _ = road
    first = bool(rng.random() < 0.5)
    target_range, rest_range = ((0.0, centre), (centre, float(n))) if first else ((centre, float(n)), (0.0, centre))
    for i in range(count):
        span = target_range if i == 0 else rest_range
        ranges[i] = ((0.0, 1e9), span) if axis == "h" else (span, (0.0, 1e9))
    return f"the {noun} {_pick(rng, _ROAD_WORDS[axis, first])} the road", {"road": 0, "first": first}


# -------------------------------------------------------------------- version 2: relations and orderings
def _peers(rng: np.random.Generator, category: str, count: int) -> list[tuple[str, str]]:
    """``count`` random ``(colour, size)`` pairs of ``category``."""
    return [(_pick(rng, _CATEGORY_COLOURS[category]), _pick(rng, ("small", "large"))) for _ in range(count)]


def _place_peers(layout: _Layout, rng: np.random.Generator, category: str, peers: Sequence[tuple[str, str]],
                 accept: Callable[[SceneObject], bool] | None = None, ranges=((0.0, 1e9), (0.0, 1e9))) -> bool:
    return all(layout.place(_make_object(rng, category, c, s, layout.n), *ranges, accept=accept) for c, s in peers)


def _anchor_layout(rng: np.random.Generator, n: int, category: str, noun: str) -> Sampled | None:
    """"the vehicle next to the white building", "the tank to the left of the pool": exactly one object of the
    target's category stands in the relation to the one object the anchor phrase names."""
    relation = _pick(rng, ANCHOR_RELATIONS)
    anchor_category = _pick(rng, [c for c in CATEGORIES if c != category])
    layout = _Layout(n, _scene_roads(rng, n, rng.uniform(0.035, 0.05) * n), rng)
    anchor = _make_object(rng, anchor_category, _pick(rng, _CATEGORY_COLOURS[anchor_category]),
                          _pick(rng, ("small", "large")), n)
    if not layout.place(anchor, (0.3 * n, 0.7 * n), (0.3 * n, 0.7 * n)):
        return None
    second = rng.random() < 0.4  # a second object of the anchor's category: the anchor phrase names the colour
    named_colour = anchor.colour if second or rng.random() < 0.5 else None
    others = [c for c in _CATEGORY_COLOURS[anchor_category] if c != anchor.colour]
    if second and not _place_peers(layout, rng, anchor_category,
                                   [(_pick(rng, others), _pick(rng, ("small", "large")))]):
        return None
    peers = _peers(rng, category, int(rng.integers(2, 5)))
    margin = ANCHOR_MARGIN * n
    if relation == "next to":
        near = ((anchor.cx - anchor.half_w - 0.2 * n, anchor.cx + anchor.half_w + 0.2 * n),
                (anchor.cy - anchor.half_h - 0.2 * n, anchor.cy + anchor.half_h + 0.2 * n))
        if not _place_peers(layout, rng, category, peers[:1], ranges=near):
            return None
        closest = _distance(layout.objects[-1], anchor)
        farther = lambda obj: _distance(obj, anchor) >= max(1.6 * closest, closest + 0.15 * n)  # noqa: E731
        placed = _place_peers(layout, rng, category, peers[1:], accept=farther)
    else:
        axis, sign = RELATION_SIDES[relation]
        centre = anchor.cx if axis == "x" else anchor.cy
        side = (0.0, centre - margin) if sign < 0 else (centre + margin, float(n))
        rest = (centre + margin, float(n)) if sign < 0 else (0.0, centre - margin)
        span = lambda r: (r, (0.0, 1e9)) if axis == "x" else ((0.0, 1e9), r)  # noqa: E731
        placed = _place_peers(layout, rng, category, peers[:1], ranges=span(side)) and _place_peers(
            layout, rng, category, peers[1:], ranges=span(rest))
    if not placed or not _add_distractors(layout, rng, (category, anchor_category), low=0):
        return None
    anchor_words = f"the {named_colour or ''} {_pick(rng, _NOUNS[anchor_category])}".replace("  ", " ")
    expression = f"the {noun} {_pick(rng, _ANCHOR_WORDS[relation])} {anchor_words}"
    target = next(i for i, obj in enumerate(layout.objects) if obj.category == category)
    return layout, expression, "anchor", {"relation": relation, "anchor": 0, "anchor_colour": named_colour}, target


def _distance(a: SceneObject, b: SceneObject) -> float:
    return math.hypot(a.cx - b.cx, a.cy - b.cy)


def _ordinal_layout(rng: np.random.Generator, n: int, category: str, noun: str) -> Sampled | None:
    """"the second tank from the left": three or four objects of the category, spaced along the axis."""
    axis, first = _pick(rng, "xy"), bool(rng.random() < 0.5)
    count = int(rng.integers(3, 5))
    rank = int(rng.integers(2, 4))
    layout = _Layout(n, _scene_roads(rng, n, rng.uniform(0.035, 0.05) * n), rng)
    coordinate = (lambda obj: obj.cx) if axis == "x" else (lambda obj: obj.cy)
    spaced = lambda obj: all(abs(coordinate(obj) - coordinate(other)) >= ORDINAL_GAP * n  # noqa: E731
                             for other in layout.objects if other.category == category)
    placed = _place_peers(layout, rng, category, _peers(rng, category, count), accept=spaced)
    if not placed or not _add_distractors(layout, rng, (category,)):
        return None
    order = sorted(range(count), key=lambda i: coordinate(layout.objects[i]), reverse=not first)
    side = {("x", True): "left", ("x", False): "right", ("y", True): "top", ("y", False): "bottom"}[axis, first]
    ordinal = _ORDINALS[rank]
    expression = _pick(rng, (f"the {ordinal} {noun} from the {side}", f"the {noun} {ordinal} from the {side}"))
    return layout, expression, "ordinal", {"axis": axis, "first": first, "rank": rank}, order[rank - 1]


def _comparison_layout(rng: np.random.Generator, n: int, category: str, noun: str) -> Sampled | None:
    """"the larger of the two tanks", "the smaller of the two red cars": exactly two objects (of the named colour)
    in the category, of different size classes."""
    size = _pick(rng, ("small", "large"))
    other_size = "small" if size == "large" else "large"
    palette = _CATEGORY_COLOURS[category]
    colour = _pick(rng, palette) if rng.random() < 0.5 else None
    if colour is None:
        peers = [(_pick(rng, palette), size), (_pick(rng, palette), other_size)]
    else:
        rest = [(_pick(rng, [c for c in palette if c != colour]), _pick(rng, ("small", "large")))
                for _ in range(int(rng.integers(1, 3)))]
        peers = [(colour, size), (colour, other_size)] + rest
    layout = _Layout(n, _scene_roads(rng, n, rng.uniform(0.035, 0.05) * n), rng)
    if not _place_peers(layout, rng, category, peers) or not _add_distractors(layout, rng, (category,)):
        return None
    which = _pick(rng, ("larger", "bigger")) if size == "large" else "smaller"
    group = f"{colour} {noun}s" if colour else f"{noun}s"
    expression = f"the {which} of the two {group}"
    return layout, expression, "comparison", {"size": size, "colour": colour}, 0


def _image_position_layout(rng: np.random.Generator, n: int, category: str, noun: str) -> Sampled | None:
    """"the pool in the upper left of the image": the target in a corner (or the centre) of the image, every
    other object of its category clearly elsewhere."""
    region = _pick(rng, IMAGE_REGIONS)
    layout = _Layout(n, _scene_roads(rng, n, rng.uniform(0.035, 0.05) * n), rng)
    peers = _peers(rng, category, int(rng.integers(2, 5)))
    if not _place_peers(layout, rng, category, peers[:1], ranges=_region_core(region, n)):
        return None
    elsewhere = lambda obj: obj.category != category or not in_image_region(obj, region, n, loose=True)  # noqa: E731
    placed = _place_peers(layout, rng, category, peers[1:], accept=elsewhere)
    if not placed or not _add_distractors(layout, rng, (category,)):
        return None
    return layout, f"the {noun} {_pick(rng, _REGION_WORDS[region])}", "image-position", {"region": region}, 0


def _region_core(region: str, n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centre ranges of a target in ``region``: the outer third of its quadrant, or the central third."""
    if region == "centre":
        return (n / 3, 2 * n / 3), (n / 3, 2 * n / 3)
    vertical, horizontal = region.split()
    x = (0.0, n / 3) if horizontal == "left" else (2 * n / 3, float(n))
    y = (0.0, n / 3) if vertical == "upper" else (2 * n / 3, float(n))
    return x, y


def in_image_region(obj: SceneObject, region: str, n: int, loose: bool = False) -> bool:
    """Whether ``obj``'s centre is in ``region`` of an ``n``-pixel image: strictly (the target's range) or
    ``loose`` (what an object must stay out of so that the phrase names one object only)."""
    if region == "centre":
        reach = (0.3 if loose else 1 / 6) * n
        return max(abs(obj.cx - n / 2), abs(obj.cy - n / 2)) < reach
    if not loose:
        (x0, x1), (y0, y1) = _region_core(region, n)
        return x0 <= obj.cx <= x1 and y0 <= obj.cy <= y1
    vertical, horizontal = region.split()
    limit = n / 2 + ANCHOR_MARGIN * n
    in_x = obj.cx < limit if horizontal == "left" else obj.cx > n - limit
    in_y = obj.cy < limit if vertical == "upper" else obj.cy > n - limit
    return in_x and in_y


def _attributes_layout(rng: np.random.Generator, n: int, category: str, noun: str) -> Sampled | None:
    """"the small red vehicle": the only object with both attributes, while another shares its colour and
    another its size."""
    palette = _CATEGORY_COLOURS[category]
    colour, size = _pick(rng, palette), _pick(rng, ("small", "large"))
    other_colour, other_size = _pick(rng, [c for c in palette if c != colour]), "small" if size == "large" else "large"
    peers = [(colour, size), (colour, other_size), (other_colour, size)]
    if rng.random() < 0.5:
        peers.append(_pick(rng, [(c, s) for c in palette for s in ("small", "large") if (c, s) != (colour, size)]))
    layout = _Layout(n, _scene_roads(rng, n, rng.uniform(0.035, 0.05) * n), rng)
    if not _place_peers(layout, rng, category, peers) or not _add_distractors(layout, rng, (category,)):
        return None
    size_word = _pick(rng, ("small", "little")) if size == "small" else _pick(rng, ("large", "big"))
    expression = f"the {size_word} {colour} {noun}"
    return layout, expression, "attributes", {"size": size, "colour": colour}, 0


_RELATIONAL_LAYOUTS: dict[str, Callable[..., Sampled | None]] = {
    "anchor": _anchor_layout, "ordinal": _ordinal_layout, "comparison": _comparison_layout,
    "image-position": _image_position_layout, "attributes": _attributes_layout,
}


# ---------------------------------------------------------------------------------------------- drawing
def _local(obj: SceneObject, n: int, shift: float = 0.0):
    """Slices of the object's box in the image and its normalised coordinates ``u`` (x) and ``v`` (y)."""
    cx, cy = obj.cx + shift, obj.cy + shift
    x0, x1 = max(0, math.floor(cx - obj.half_w)), min(n, math.ceil(cx + obj.half_w) + 1)
    y0, y1 = max(0, math.floor(cy - obj.half_h)), min(n, math.ceil(cy + obj.half_h) + 1)
    u = ((np.arange(x0, x1) + 0.5 - cx) / obj.half_w)[None, :]
    v = ((np.arange(y0, y1) + 0.5 - cy) / obj.half_h)[:, None]
    return (slice(y0, y1), slice(x0, x1)), u, v


def _shape(obj: SceneObject, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    kind = _SHAPE_OF[obj.category]
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "rounded":
        return u**4 + v**4 <= 1.0
    return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)


def _shading(obj: SceneObject, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pixel brightness factor inside the object (roof halves, tank rings, windscreens, pool rims)."""
    along, across = (u, v) if obj.half_w >= obj.half_h else (v, u)
    if obj.category == "vehicle":
        return np.where((np.abs(along) < 0.45) & (np.abs(across) < 0.7), 0.72, 1.0)
    if obj.category == "building":
        return np.where(across > 0, 0.82, 1.0) * np.ones_like(along)
    if obj.category == "storage tank":
        radius = np.sqrt(u * u + v * v)
        return np.where((radius > 0.55) & (radius < 0.7), 0.78, 1.0)
    return np.where(u**4 + v**4 > 0.6, 1.15, 1.0)


def road_band(centre: float, half_width: float, image_size: int) -> slice:
    """The rows (horizontal road) or columns (vertical road) a road covers."""
    return slice(max(0, round(centre - half_width)), min(image_size, round(centre + half_width)))


def object_footprint(obj: SceneObject, image_size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Where ``obj`` is drawn: the slices of its box in the image and the boolean shape inside that box."""
    index, u, v = _local(obj, image_size)
    return index, _shape(obj, u, v)


def _render(layout: _Layout, rng: np.random.Generator,
            target: SceneObject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image, the target's mask and the mask of every object of the target's category."""
    n = layout.n
    ground = np.array(_GROUNDS[int(rng.integers(len(_GROUNDS)))], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    coarse = Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32)).resize((n, n), Image.BILINEAR)
    canvas = ground + np.asarray(coarse)[..., None] * 12.0 + rng.normal(0, 5, (n, n, 1)).astype(np.float32)
    noise = canvas.mean(axis=2, keepdims=True) - ground.mean()
    for axis, centre, half in layout.roads:
        band = road_band(centre, half, n)
        line = slice(round(centre - max(0.5, 0.006 * n)), round(centre + max(0.5, 0.006 * n)))
        index = (band, slice(None)) if axis == "h" else (slice(None), band)
        canvas[index] = 105.0 + 0.4 * noise[index]
        dashes = (np.arange(n) % max(4, round(0.08 * n))) < max(2, round(0.04 * n))
        canvas[(line, dashes) if axis == "h" else (dashes, line)] = 225.0
    for _ in range(int(rng.integers(0, 7))):  # trees: clutter under the objects, never in the mask
        radius = rng.uniform(0.015, 0.035) * n
        tree = SceneObject("storage tank", "green", "small", radius, radius, rng.uniform(0, n), rng.uniform(0, n))
        index, u, v = _local(tree, n)
        canvas[index][_shape(tree, u, v)] = np.array((40, 85, 42), np.float32) * rng.uniform(0.8, 1.1)
    shift = max(1.0, round(0.012 * n))
    for obj in layout.objects:  # shadows towards the bottom right
        index, u, v = _local(obj, n, shift)
        canvas[index][_shape(obj, u, v)] *= 0.6
    mask = np.zeros((n, n), dtype=bool)
    category_mask = np.zeros((n, n), dtype=bool)
    for obj in layout.objects:
        index, u, v = _local(obj, n)
        inside = _shape(obj, u, v)
        colour = np.array(COLOURS[obj.colour], np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
        pixels = colour * _shading(obj, u, v)[..., None] + 0.3 * noise[index]
        canvas[index][inside] = pixels[inside]
        if obj is target:
            mask[index] = inside
        if obj.category == target.category:
            category_mask[index] |= inside
    return np.clip(canvas, 0, 255).astype(np.uint8), mask, category_mask


def check_version(version: int) -> int:
    """``version`` if it is one of `DATA_VERSIONS`, else a ``ValueError`` that names them."""
    if version not in DATA_VERSIONS:
        raise ValueError(f"Synthetic data `version` must be one of {DATA_VERSIONS}, got {version!r}.")
    return int(version)


def generate_scene_with_layout(rng_or_seed: SeedLike = 0, image_size: int = 128,
                               version: int = DATA_VERSION) -> SyntheticScene:
    """One scene with its layout (see the module docstring); deterministic for a seed and ``version``."""
    if image_size < 32:
        raise ValueError(f"`image_size` must be at least 32 pixels, got {image_size} (objects are legible from ~96).")
    rng = np.random.default_rng(rng_or_seed)  # a Generator is returned as it is
    version = check_version(version)
    for _ in range(100):
        sampled = _sample_layout(rng, image_size, version)
        if sampled is None:
            continue  # no room for every object: draw another layout from the same stream
        layout, expression, family, rule, index = sampled
        target = layout.objects[index]
        pixels, mask, category_mask = _render(layout, rng, target)
        return SyntheticScene(Image.fromarray(pixels), mask, expression, target.category, family,
                              objects=list(layout.objects), target=index, roads=list(layout.roads), rule=rule,
                              category_mask=category_mask)
    raise RuntimeError(f"Could not lay out a scene at image_size={image_size}; use a larger image_size.")


def generate_scene(rng_or_seed: SeedLike = 0, image_size: int = 128,
                   version: int = DATA_VERSION) -> tuple[Image.Image, np.ndarray, str, str]:
    """``(RGB image, (H, W) boolean target mask, expression, category)`` for a seed or generator."""
    scene = generate_scene_with_layout(rng_or_seed, image_size, version)
    return scene.image, scene.mask, scene.expression, scene.category


def _sample(seed: int, index: int, image_size: int, version: int) -> dict[str, Any]:
    scene = generate_scene_with_layout((seed, index), image_size, version)
    sample_id = f"synthetic-{seed}-{index}"
    return {"image": scene.image, "mask": scene.mask, "expression": scene.expression, "image_id": sample_id,
            "sample_id": sample_id, "category": scene.category, "family": scene.family,
            "category_mask": scene.category_mask}


def make_synthetic_dataset(num_samples: int, image_size: int = 128, seed: int = 0,
                           version: int = DATA_VERSION) -> datasets.Dataset:
    """``num_samples`` scenes (scene ``i`` from ``(seed, i)``) as a dataset with the loaders' columns,
    ``family`` and ``category_mask``; ``version`` selects the generator (`DATA_VERSIONS`)."""
    if num_samples < 0:
        raise ValueError(f"`num_samples` must be non-negative, got {num_samples}.")
    samples = (_sample(seed, index, image_size, version) for index in range(num_samples))
    return records_to_dataset([{**sample, "mask": encode_mask(sample["mask"]),
                                "category_mask": encode_mask(sample["category_mask"])} for sample in samples])


class SyntheticSceneStream(torch.utils.data.Dataset):
    """Map-style dataset of ``length`` fresh scenes, item ``i`` drawn from ``(seed, i)``: reproducible with any
    number of workers, already random, so read it in order (``shuffle=False``); evaluate on another ``seed``. Items
    are dicts with the loaders' columns (``image`` PIL, ``mask`` an ``(H, W)`` boolean array) and ``family``."""

    def __init__(self, image_size: int = 128, seed: int = 0, length: int = 1_000_000,
                 version: int = DATA_VERSION) -> None:
        if length <= 0:
            raise ValueError(f"`length` must be positive, got {length}.")
        self.image_size, self.seed, self.length = int(image_size), int(seed), int(length)
        self.version = check_version(version)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a stream of length {self.length}")
        return _sample(self.seed, int(index), self.image_size, self.version)


def write_refsegrs_layout(out_dir: str | os.PathLike, splits: Mapping[str, int], image_size: int = 512, seed: int = 0,
                          version: int = DATA_VERSION) -> Path:
    """Writes scenes in the RefSegRS layout (TIFF images, 0/255 TIFF masks, phrase files) that `load_refsegrs`
    reads back exactly. Ids count up from 0 across ``splits`` in train/val/test order; id ``k`` is scene
    ``(seed, k)``. Splits not given get an empty phrase file. Returns ``out_dir``."""
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"`splits` keys must be among {', '.join(SPLITS)}; got {sorted(unknown)}.")
    out = Path(out_dir)
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    next_id = 0
    for split in SPLITS:
        lines = []
        for _ in range(int(splits.get(split, 0))):
            sample = _sample(seed, next_id, image_size, version)
            sample["image"].save(out / "images" / f"{next_id}.tif", format="TIFF")
            mask = Image.fromarray(sample["mask"].astype(np.uint8) * 255)
            mask.save(out / "masks" / f"{next_id}.tif", format="TIFF")
            lines.append(f"{next_id} {sample['expression']}\n")
            next_id += 1
        (out / f"output_phrase_{split}.txt").write_text("".join(lines), encoding="utf-8")
    return out
