"""What the head's rank kernel counts on ordinal expressions ("the second pool from the bottom"): its candidate
objects against the scene's layout, on the synthetic **val** scenes.

The rank kernel (`SegmentationHead.rank_terms`) counts the connected regions that the head's own logits, before the
place and rank terms (or, with `head_category_map`, the category map's logits), rate at least half as likely as their
best pixel. For each ordinal val scene this script compares those regions with the objects the generator drew, at
the head's resolution:

* how many of the named category's objects the candidates cover (at least half of each object's cells);
* how many candidate regions lie on no object of the named category (other categories' objects, roads, background);
* the IoU with the target of the region that the ordinal's rank from its side picks (the rule alone, without the
  network's other terms), for the head's candidates and for the layout's own objects of the named category;
* how often the largest of the weights the sentence gives the rank terms is the one of the ordinal's side and rank
  (the kernel reading the expression's count right), and the model's own IoU on those scenes.

    python -m benchmarks.rank_candidates                          # the reference adapter, 512 val scenes
    python -m benchmarks.rank_candidates --adapter outputs/run --num_samples 1024

The table goes to the ``rank-candidates`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.common import DOCS_PAGE, command_line, machine_info, machine_line, markdown_table, write_section
from s4eca_peft.modeling.head import CANDIDATE_SHARE, SegmentationHead, rank_candidates

OBJECT_CELL_SHARE = 0.3
"""A cell of the head's map belongs to an object when the object covers at least this share of its pixels."""
OTHER_SHARES = (0.3, 0.7)
"""Shares of the best pixel's probability, beside the kernel's own `CANDIDATE_SHARE`, at which the head's candidates
are compared."""
SOURCES = {False: "the head's own logits, before the place and rank terms", True: "the head's category map"}
"""Where the rank kernel reads its candidates: a head without and with `head_category_map`."""
WHICH = ["head", *(f"head {t}" for t in OTHER_SHARES), "layout"]
"""The candidate maps compared: the head's at its own share of the best pixel (what the kernel counts) and at the
`OTHER_SHARES`, and the layout's objects of the named category."""


def labels(category_map: bool) -> list[str]:
    """The table's label of each of `WHICH` for a head without or with a category map."""
    source = "the category map" if category_map else "the head's own"
    return [f"{source} at {CANDIDATE_SHARE} of the best pixel (what the kernel counts)",
            *(f"{source} at {t} of the best pixel" for t in OTHER_SHARES), "the layout's objects of the named category"]
SIDES = {("x", True): "left", ("x", False): "right", ("y", True): "top", ("y", False): "bottom"}


def cells_of(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """The cells of a ``size`` map that a full-resolution boolean ``mask`` covers by `OBJECT_CELL_SHARE` or more."""
    share = F.adaptive_avg_pool2d(torch.from_numpy(mask).float()[None, None], size)[0, 0]
    return share >= OBJECT_CELL_SHARE


def object_cells(scene, image_size: int, size: tuple[int, int]) -> list[tuple[int, str, torch.Tensor]]:
    """``(index, category, cells)`` of each object the generator drew in ``scene``."""
    from s4eca_peft.data.synthetic import object_footprint

    found = []
    for index, obj in enumerate(scene.objects):
        drawn = np.zeros((image_size, image_size), dtype=bool)
        box, shape = object_footprint(obj, image_size)
        drawn[box] |= shape
        found.append((index, obj.category, cells_of(drawn, size)))
    return found


def ordinal_side(scene) -> int:
    """The index in `RANK_SIDES` of the side an ordinal scene counts from."""
    from s4eca_peft.modeling.ranks import RANK_SIDES

    return RANK_SIDES.index(SIDES[scene.rule["axis"], scene.rule["first"]])


def rank_pick_iou(candidates: torch.Tensor, scene, target: torch.Tensor) -> float:
    """IoU with ``target`` of the candidate region whose rank from the ordinal's side is the ordinal's rank."""
    from s4eca_peft.modeling.ranks import object_ranks

    picked = object_ranks(candidates[None])[0, ordinal_side(scene)] == scene.rule["rank"]
    return float((picked & target).sum() / max(1, int((picked | target).sum())))


def kernel_reads_the_rank(weights: torch.Tensor, scene) -> bool:
    """Whether the largest of the rank kernel's ``weights`` (``4 * MAX_RANK``, side-major as `rank_terms` stacks
    them) is the ordinal's side and rank."""
    from s4eca_peft.modeling.head import MAX_RANK

    return int(weights.argmax()) == ordinal_side(scene) * MAX_RANK + scene.rule["rank"] - 1


def candidate_regions(candidates: torch.Tensor) -> list[torch.Tensor]:
    """The regions the rank kernel counts (8-connected, `MIN_OBJECT_CELLS` or more cells) as boolean maps."""
    from s4eca_peft.modeling.ranks import MIN_OBJECT_CELLS, connected_components

    labels = connected_components(candidates[None])[0]
    regions = [labels == label for label in labels.unique().tolist() if label]
    return [region for region in regions if int(region.sum()) >= MIN_OBJECT_CELLS]


def stray_regions(candidates: torch.Tensor, named: list[torch.Tensor]) -> list[torch.Tensor]:
    """The candidate regions that lie mostly (half their cells or more) on no object of the ``named`` ones."""
    return [region for region in candidate_regions(candidates)
            if not any(int((region & cells).sum()) >= int(region.sum()) / 2 for cells in named)]


def measure(adapter: str, num_samples: int, image_size: int) -> dict[str, Any]:
    """The comparison over the ordinal scenes among the first ``num_samples`` val scenes, per candidate map
    (`WHICH`)."""
    from s4eca_peft.adapter_folder import load_for_inference
    from s4eca_peft.data.loaders import SYNTHETIC_SPLIT_SEEDS
    from s4eca_peft.data.synthetic import generate_scene_with_layout

    model, processor, _ = load_for_inference(adapter)
    heads = [m for m in model.modules() if isinstance(m, SegmentationHead) and m.rank_kernel is not None]
    if not heads:
        raise SystemExit(f"--adapter {adapter!r}: its head has no rank kernel (head_rank_kernel=False).")
    head = heads[-1]  # the trained copy: PEFT keeps the original beside the one it trains
    seen: dict[str, torch.Tensor] = {}

    def remember(logits: torch.Tensor) -> torch.Tensor:
        seen["logits"] = logits.detach()
        return SegmentationHead.rank_terms(logits)

    def weigh(reads: torch.Tensor) -> torch.Tensor:
        seen["weights"] = SegmentationHead.rank_weights(head, reads).detach()
        return seen["weights"]

    head.rank_terms = remember  # the candidates the kernel counts, read where it reads them
    head.rank_weights = weigh  # the weights the sentence gives them, side x count products included
    rows: dict[str, dict[str, list[float]]] = {which: {"covered": [], "stray": [], "pick": []} for which in WHICH}
    kernel_right: list[bool] = []
    model_iou: list[float] = []
    stray_on: Counter[str] = Counter()
    for index in range(num_samples):
        scene = generate_scene_with_layout((SYNTHETIC_SPLIT_SEEDS["val"], index), image_size)
        if scene.family != "ordinal":
            continue
        inputs = processor(images=[scene.image], text=[scene.expression], return_tensors="pt")
        with torch.no_grad():
            output = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                           attention_mask=inputs["attention_mask"])
        logits = seen["logits"][:1]
        drawn = object_cells(scene, image_size, tuple(logits.shape[-2:]))
        named = [cells for _, category, cells in drawn if category == scene.category]
        target = next(cells for i, _, cells in drawn if i == scene.target)
        kernel_right.append(kernel_reads_the_rank(seen["weights"][0], scene))
        mask = output.logits[0, 0] > 0  # the model's mask at the head's resolution
        model_iou.append(float((mask & target).sum() / max(1, int((mask | target).sum()))))
        maps = {"head": rank_candidates(logits)[0],
                **{f"head {t}": rank_candidates(logits, share=t)[0] for t in OTHER_SHARES},
                "layout": torch.stack(named).any(dim=0)}
        strays = {which: stray_regions(candidates, named) for which, candidates in maps.items()}
        for which, candidates in maps.items():
            rows[which]["covered"].append(
                sum(int((candidates & c).sum()) >= int(c.sum()) / 2 for c in named) / len(named))
            rows[which]["stray"].append(len(strays[which]))
            rows[which]["pick"].append(rank_pick_iou(candidates, scene, target))
        for region in strays["head"]:
            hit = [category for _, category, cells in drawn if category != scene.category and (region & cells).any()]
            stray_on[hit[0] if hit else "no object (road or ground)"] += 1
    if not rows["layout"]["covered"]:
        raise SystemExit(f"--num_samples {num_samples}: no ordinal scene among them; use more scenes.")
    return {"scenes": len(rows["layout"]["covered"]), "num_samples": num_samples,
            "category_map": head.category_kernel is not None,
            "candidates": {which: {**{name: float(np.mean(values)) for name, values in row.items()},
                                   "picks_above_half": float(np.mean(np.array(row["pick"]) > 0.5))}
                           for which, row in rows.items()},
            "stray_regions_on": dict(stray_on.most_common()),
            "kernel_reads_the_rank": float(np.mean(kernel_right)),
            "model_iou": {read: float(np.mean([iou for iou, right in zip(model_iou, kernel_right) if right == read]))
                          if read in kernel_right else None for read in (True, False)}}


def section(result: dict[str, Any], command: str) -> str:
    rows = [[label, f"{100 * c['covered']:.0f} %", f"{c['stray']:.2f}", f"{c['pick']:.2f}",
             f"{100 * c['picks_above_half']:.0f} %"]
            for label, c in zip(labels(result["category_map"]), result["candidates"].values())]
    table = markdown_table(["candidates", "named category's objects covered",
                            "regions on no object of the category, per scene", "IoU of the region the rank picks",
                            "picks with IoU > 0.5"], rows)
    stray = ", ".join(f"{name} {count}" for name, count in result["stray_regions_on"].items()) or "none"

    def iou(read: bool) -> str:
        value = result["model_iou"][read]
        return "- (no such scene)" if value is None else f"{value:.2f}"
    return "\n".join([
        "## What the rank kernel counts (val)",
        "",
        f"Command: `{command}`. Machine: {machine_line(machine_info(torch.get_num_threads()))}.",
        "",
        f"The {result['scenes']} ordinal scenes among the first {result['num_samples']} val scenes, at the head's "
        f"resolution: the regions the rank kernel counts ({SOURCES[result['category_map']]}, at least half as "
        "likely as their best pixel), the same at other shares of the best pixel, and the layout's "
        "objects of the named category, against the "
        "objects the generator drew; and the region the ordinal's rank picks from its side with each (the rule "
        "alone, without the network's other terms), against the target.",
        "",
        table,
        "",
        f"The head's candidate regions on no object of the named category lay on: {stray}.",
        "",
        f"The largest of the weights the sentence gives the rank terms is the ordinal's own side and rank in "
        f"{100 * result['kernel_reads_the_rank']:.0f} % of these scenes. The model's mask (at the head's resolution) "
        f"has IoU {iou(True)} with the target where it is and {iou(False)} where it is not.",
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from s4eca_peft.modeling.packaged import REFERENCE_ADAPTER

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=REFERENCE_ADAPTER, help="Adapter folder, Hub repo or the reference.")
    parser.add_argument("--num_samples", type=int, default=512, help="First val scenes to look at (ordinal ones).")
    parser.add_argument("--image_size", type=int, default=128, help="Scene size in pixels.")
    parser.add_argument("--docs", default=str(DOCS_PAGE), help="Markdown page for the section ('' for none).")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = measure(args.adapter, args.num_samples, args.image_size)
    words = [] if args.adapter == REFERENCE_ADAPTER else ["--adapter", args.adapter]
    words += [] if args.num_samples == 512 else ["--num_samples", str(args.num_samples)]
    text = section(result, command_line("rank_candidates", *words))
    print(text)
    if args.docs:
        write_section(args.docs, "rank-candidates", text)
    return result


if __name__ == "__main__":
    main()
