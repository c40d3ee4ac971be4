"""Evaluation under the RRSIS protocol, and the ``s4eca-eval`` command: per-sample intersection and union at the
resolution the adapter was trained at, gathered across processes, then the metrics computed once
(`s4eca_peft.metrics.rrsis_metrics`), never averaged per batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.nn import functional as F

from ..files import check_target, write_json_atomic
from ..inference.visualization import overlay_mask, save_image_atomic
from ..metrics import intersection_and_union, metrics_markdown_table, rrsis_metrics
from .arguments import EvalArguments, parse_eval_args


@torch.no_grad()
def evaluate_loop(model: torch.nn.Module, dataloader, accelerator=None, desc: str = "evaluation") -> dict[str, Any]:
    """Mask metrics over a dataloader of collated batches (``labels`` at the input resolution); per family too
    (``"per_family"``, see `s4eca_peft.metrics.rrsis_metrics`) when every batch names its samples' ``families``."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    intersections, unions, families = [], [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(dataloader, desc=desc, disable=not main, leave=False):
        logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"]
        logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        inter, union = intersection_and_union(logits[:, 0] > 0, labels[:, 0] > 0.5)  # probability > 0.5
        names = batch.get("families")
        if accelerator is not None:
            inter, union = accelerator.gather_for_metrics((inter, union))
            names = None if names is None else accelerator.gather_for_metrics(list(names), use_gather_object=True)
        intersections.append(inter.cpu())
        unions.append(union.cpu())
        families.append(names)
    if was_training:
        model.train()
    if not intersections:
        raise ValueError("The evaluation set is empty.")
    named = None if any(names is None for names in families) else [name for names in families for name in names]
    return rrsis_metrics(torch.cat(intersections), torch.cat(unions), named)


def measure_language_use(model: torch.nn.Module, dataloader, accelerator=None,
                         matched: dict[str, Any] | None = None, desc: str = "evaluation") -> dict[str, Any]:
    """What the vision adapters carry of the language: the drop in mask quality when each image's vision adapters
    read the proxies of another image's expression (`s4eca_peft.tuner.mismatch_proxies`; batches of 2 or more).

    ``matched``: the `evaluate_loop` scores of the same model and dataloader, if already at hand. Returns
    ``{"mIoU_drop", "oIoU_drop", "mismatched": scores, "per_family_mIoU_drop": {family: drop}}`` (docs/evaluation.md),
    the last only when the samples carry a family. Adapters that ignore their proxies give exactly 0.
    """
    from ..tuner import mismatch_proxies

    matched = matched if matched is not None else evaluate_loop(model, dataloader, accelerator, desc=desc)
    with mismatch_proxies(model):
        mismatched = evaluate_loop(model, dataloader, accelerator, desc=f"{desc}, mismatched proxies")
    result = {"mIoU_drop": matched["mIoU"] - mismatched["mIoU"], "oIoU_drop": matched["oIoU"] - mismatched["oIoU"],
              "mismatched": mismatched}
    if "per_family" in matched and "per_family" in mismatched:
        result["per_family_mIoU_drop"] = {family: scores["mIoU"] - mismatched["per_family"][family]["mIoU"]
                                          for family, scores in matched["per_family"].items()}
    return result


@torch.no_grad()
def save_overlays(model, processor, dataset, path: str | os.PathLike, num_samples: int = 4) -> None:
    """A strip of predictions (red) with the ground-truth outline (green) and the expression, as one PNG."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    count = min(num_samples, len(dataset))
    strip = Image.new("RGB", (256 * count, 290), "white")  # a 256-pixel tile per sample, its expression below
    for index in range(count):
        row = dataset[index]
        image = row["image"].convert("RGB") if isinstance(row["image"], Image.Image) else Image.fromarray(row["image"])
        outputs = model(**processor(images=[image], text=[row["expression"]]).to(device))
        (predicted,) = processor.post_process_masks(outputs, [(image.height, image.width)])
        tile = overlay_mask(image, predicted.cpu().numpy(), outline=np.asarray(row["mask"]) > 0)
        strip.paste(tile.resize((256, 256)), (256 * index, 0))
        ImageDraw.Draw(strip).text((256 * index + 4, 262), row["expression"][:42], fill="black")
    if was_training:
        model.train()
    if count:
        save_image_atomic(strip, path)


def evaluate_adapter(args: EvalArguments) -> dict[str, Any]:
    """Score an adapter on one split (metrics printed as a table, and written to ``args.output`` when set)."""
    from accelerate import Accelerator

    from ..adapter_folder import load_for_inference
    from ..data.loaders import eval_dataloader, load_split

    if args.output:
        check_target(args.output)  # a folder, link, device or pipe is refused before any work
    accelerator = Accelerator()
    model, processor, metadata = load_for_inference(args.adapter, revision=args.revision)
    processor.image_size = args.image_size or metadata.get("image_size", processor.image_size)
    dataset = load_split(args.dataset, args.split, data_dir=args.data_dir, image_size=processor.image_size,
                         num_samples=args.num_samples, max_samples=args.max_eval_samples, revision=args.data_revision,
                         version=args.data_version)
    model, dataloader = accelerator.prepare(
        model, eval_dataloader(dataset, processor, args.batch_size, args.dataloader_num_workers))
    metrics = evaluate_loop(model, dataloader, accelerator, desc=f"{args.split}")
    result = {"split": args.split, "dataset": args.dataset, "image_size": processor.image_size,
              "adapter": str(args.adapter), **metrics}
    if args.dataset == "synthetic":
        result["data_version"] = args.data_version
    if args.language_use:
        result["language_use"] = measure_language_use(model, dataloader, accelerator, matched=metrics, desc=args.split)
    if accelerator.is_main_process:
        print(metrics_markdown_table(metrics, args.split))
        if args.language_use:  # the drops in points, overall and per family, then the mismatched scores
            use = result["language_use"]
            print(f"Language use (drop when each image's vision adapters read another image's proxies): mIoU "
                  f"{100 * use['mIoU_drop']:+.2f}, oIoU {100 * use['oIoU_drop']:+.2f} points")
            for family, drop in use.get("per_family_mIoU_drop", {}).items():
                print(f"  {family}: mIoU {100 * drop:+.2f}")
            print(metrics_markdown_table(use["mismatched"], "mismatched proxies"))
        if args.output:
            write_json_atomic(args.output, result)
    return result


def eval_main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``s4eca-eval``."""
    return evaluate_adapter(parse_eval_args(argv))
