"""`ambiguity`: whether a synthetic scene's expression picks out its target alone, read from the layout (objects and
roads) only, never the generator's internals, so it checks the generator rather than repeating it.
"""

from __future__ import annotations

import math
from typing import Any

from .synthetic import ANCHOR_MARGIN, ORDINAL_GAP, RELATION_SIDES, SceneObject, SyntheticScene, in_image_region

# the checks allow a little less than the generator keeps, so that rounding never fails a scene
_SLACK = 0.8


def _coordinate(obj: SceneObject, axis: str) -> float:
    return obj.cx if axis == "x" else obj.cy


def _peers(scene: SyntheticScene) -> list[SceneObject]:
    """The objects of the target's category, the target among them."""
    return [o for o in scene.objects if o.category == scene.category]


def _anchor(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    anchor = scene.objects[rule["anchor"]]
    named = [o for o in scene.objects if o.category == anchor.category
             and (rule["anchor_colour"] is None or o.colour == rule["anchor_colour"])]
    if named != [anchor] or anchor.category == scene.category:
        return f"the anchor phrase names {len(named)} objects, or the target's category"
    peers = _peers(scene)
    target = scene.objects[scene.target]
    if rule["relation"] == "next to":
        distances = sorted(math.hypot(o.cx - anchor.cx, o.cy - anchor.cy) for o in peers if o is not target)
        closest = math.hypot(target.cx - anchor.cx, target.cy - anchor.cy)
        if not distances or distances[0] >= max(1.5 * closest, closest + _SLACK * 0.15 * n):
            return None
        return f"another object is about as close to the anchor ({distances[0]:.1f} vs {closest:.1f} px)"
    axis, sign = RELATION_SIDES[rule["relation"]]
    margin = _SLACK * ANCHOR_MARGIN * n
    offsets = [sign * (_coordinate(o, axis) - _coordinate(anchor, axis)) for o in peers]
    inside = [o for o, offset in zip(peers, offsets) if offset >= margin]
    unclear = [o for o, offset in zip(peers, offsets) if -margin < offset < margin]
    if inside == [target] and not unclear:
        return None
    return f"{len(inside)} objects are {rule['relation']} the anchor, {len(unclear)} on its boundary"


def _ordinal(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    peers = _peers(scene)
    order = sorted(peers, key=lambda o: _coordinate(o, rule["axis"]), reverse=not rule["first"])
    values = [_coordinate(o, rule["axis"]) for o in order]
    gaps = [abs(a - b) for a, b in zip(values, values[1:])]
    if len(order) < rule["rank"] or order[rule["rank"] - 1] is not scene.objects[scene.target]:
        return f"the target is not number {rule['rank']} along {rule['axis']}"
    spaced = min(gaps) >= _SLACK * ORDINAL_GAP * n
    return None if spaced else f"two objects are only {min(gaps):.1f} px apart along {rule['axis']}"


def _comparison(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    group = [o for o in _peers(scene) if rule["colour"] is None or o.colour == rule["colour"]]
    if len(group) != 2 or group[0].size == group[1].size:
        return f"the compared group has {len(group)} objects (two of different sizes expected)"
    chosen = [o for o in group if o.size == rule["size"]]
    return None if chosen == [scene.objects[scene.target]] else "the target is not the stated one of the two"


def _image_position(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    target = scene.objects[scene.target]
    if not in_image_region(target, rule["region"], n):
        return f"the target is not in the {rule['region']} of the image"
    others = [o for o in _peers(scene) if o is not target and in_image_region(o, rule["region"], n, loose=True)]
    return f"{len(others)} other objects are in the {rule['region']} too" if others else None


def _attributes(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    """Also the ``colour`` and ``size`` families (one attribute); the chain needs both attributes to be needed."""
    peers = _peers(scene)
    wanted = {k: rule[k] for k in ("colour", "size") if rule.get(k) is not None}
    matching = [o for o in peers if all(getattr(o, k) == v for k, v in wanted.items())]
    if matching != [scene.objects[scene.target]]:
        return f"{len(matching)} objects have {wanted}"
    needed = len(wanted) < 2 or all(any(getattr(o, k) == v for o in peers if o not in matching)
                                    for k, v in wanted.items())
    return None if needed else "one attribute alone already singles out the target"


def _position(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    """The extreme object (of the named colour) along the axis, every other one a clear gap behind."""
    target = scene.objects[scene.target]
    peers = [o for o in _peers(scene) if o is not target and rule.get("colour") in (None, o.colour)]
    sign = 1 if rule["first"] else -1
    gaps = [sign * (_coordinate(o, rule["axis"]) - _coordinate(target, rule["axis"])) for o in peers]
    clear = gaps and min(gaps) >= 0.08 * n - 1e-6
    return None if clear else "the target is not the extreme one by a clear gap"


def _road(scene: SyntheticScene, rule: dict[str, Any], n: int) -> str | None:
    axis, centre, _ = scene.roads[rule["road"]]
    coordinate = "y" if axis == "h" else "x"
    on_side = [o for o in _peers(scene) if (_coordinate(o, coordinate) < centre) == rule["first"]]
    separated = len(scene.roads) == 1 and on_side == [scene.objects[scene.target]]
    return None if separated else "the road does not separate the target from the others"


_CHECKS = {"colour": _attributes, "size": _attributes, "attributes": _attributes, "comparison": _comparison,
           "position": _position, "colour+position": _position, "road": _road, "anchor": _anchor,
           "ordinal": _ordinal, "image-position": _image_position}


def ambiguity(scene: SyntheticScene) -> str | None:
    """``None`` when the scene's rule holds for its target and no other object of its category, every other one
    clearly on the other side of the rule's boundary (positions by a margin), and another object shares the target's
    category; else what is wrong, in words. ``scene`` comes from `generate_scene_with_layout`."""
    if scene.family not in _CHECKS:
        raise ValueError(f"Unknown expression family {scene.family!r}; expected one of {sorted(_CHECKS)}.")
    if len(_peers(scene)) < 2:
        return "no other object shares the target's category"
    return _CHECKS[scene.family](scene, scene.rule, scene.image.width)
