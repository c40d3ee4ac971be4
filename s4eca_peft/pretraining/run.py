"""Pretrain the embedded vision backbone without language, score its pretext on held-out scenes, and export it.

Both scene streams (`PRETRAIN_SEED`, `PRETRAIN_EVAL_SEED`) differ from the referring task's val/test seeds, so no
val/test scene is seen before adaptation.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import SwinBackbone, SwinConfig

from ..data.synthetic import generate_scene_with_layout
from ..files import atomic_write_folder
from ..metrics import intersection_and_union
from ..modeling.configuration import STAGE_NAMES
from ..modeling.packaged import EMBEDDED_VISION_CONFIG
from ..modeling.processing import IMAGENET_MEAN, IMAGENET_STD
from .labels import IGNORE, REGION_CLASSES, scene_label_maps
from .pretext import PretextModel, mask_blocks, pretext_losses

PRETRAIN_SEED = 3_000_017
"""Seed of the pretraining scene stream (scene ``i`` is drawn from ``(PRETRAIN_SEED, i)``)."""
PRETRAIN_EVAL_SEED = 3_000_019
"""Seed of the held-out scenes that score the pretext."""
PRETRAIN_DATA_VERSION = 1
"""Version of the synthetic scenes the shipped backbone was pretrained on (kept, so that it stays reproducible)."""


def pretext_batch(seed: int, start: int, batch_size: int, image_size: int,
                  flip: bool = False) -> dict[str, torch.Tensor]:
    """Scenes ``start .. start + batch_size`` of stream ``seed``: normalised ``pixel_values`` and label maps; with
    ``flip``, scene ``i`` is mirrored left-right (labels with it) when ``(seed, i)`` says so."""
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    pixels, labels = [], {"region": [], "colour": [], "size": []}
    for index in range(start, start + batch_size):
        scene = generate_scene_with_layout((seed, index), image_size, version=PRETRAIN_DATA_VERSION)
        image = (np.asarray(scene.image, np.float32) / 255.0 - mean) / std
        maps = scene_label_maps(scene)
        if flip and np.random.default_rng((seed, index, 1)).random() < 0.5:
            image, maps = image[:, ::-1], {k: v[:, ::-1] for k, v in maps.items()}
        pixels.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
        for name, value in maps.items():
            labels[name].append(torch.from_numpy(np.ascontiguousarray(value)))
    return {"pixel_values": torch.stack(pixels), **{k: torch.stack(v) for k, v in labels.items()}}


def _step_losses(model: PretextModel, batch: dict[str, torch.Tensor], generator: torch.Generator):
    pixel_values = batch["pixel_values"]
    inputs, mask = pixel_values, None
    if model.uses_pixels:
        inputs, mask = mask_blocks(pixel_values, generator)
    return pretext_losses(model(inputs), batch, pixel_values, mask)


@torch.no_grad()
def evaluate_pretext(model: PretextModel, num_samples: int = 128, image_size: int = 128,
                     batch_size: int = 32) -> dict[str, float]:
    """Held-out pretext scores: region mIoU over `REGION_CLASSES`, colour and size accuracy on object pixels,
    mean absolute error of the masked pixels (normalised units)."""
    model.eval()
    intersection, union = np.zeros((2, len(REGION_CLASSES)))
    correct, counted = {"colour": 0, "size": 0}, {"colour": 0, "size": 0}
    pixel_errors = []
    generator = torch.Generator().manual_seed(PRETRAIN_EVAL_SEED)
    classes = torch.arange(len(REGION_CLASSES)).view(-1, 1, 1)  # one "sample" per class for intersection_and_union
    for start in range(0, num_samples, batch_size):
        batch = pretext_batch(PRETRAIN_EVAL_SEED, start, min(batch_size, num_samples - start), image_size)
        if model.uses_labels:
            outputs = model(batch["pixel_values"])
            predicted, target = outputs["region"].argmax(1).flatten(0, 1), batch["region"].flatten(0, 1)
            counts = intersection_and_union(predicted == classes, target == classes)
            intersection, union = intersection + counts[0].numpy(), union + counts[1].numpy()
            for name in ("colour", "size"):
                valid = batch[name] != IGNORE
                correct[name] += (outputs[name].argmax(1)[valid] == batch[name][valid]).sum().item()
                counted[name] += valid.sum().item()
        if model.uses_pixels:
            pixel_errors.append(_step_losses(model, batch, generator)["pixels"].item())
    metrics: dict[str, float] = {}
    if model.uses_labels:
        present = union > 0
        metrics["region_mIoU"] = float((intersection[present] / union[present]).mean())
        metrics.update({f"{k}_accuracy": correct[k] / max(1, counted[k]) for k in correct})
    if pixel_errors:
        metrics["masked_pixel_l1"] = float(np.mean(pixel_errors))
    model.train()
    return metrics


def train_pretext(pretext: str = "dense", steps: int = 120, batch_size: int = 16, learning_rate: float = 2e-3,
                  image_size: int = 128, seed: int = 0,
                  log: Callable[[str], None] = print) -> tuple[PretextModel, dict[str, Any]]:
    """Train a `PretextModel` on scenes of the `PRETRAIN_SEED` stream (step ``s`` reads scenes
    ``s * batch_size ...``); ``seed`` sets the initial weights and the masks. Returns the model and run facts."""
    torch.manual_seed(seed)
    model = PretextModel(SwinConfig(**dict(EMBEDDED_VISION_CONFIG, image_size=image_size)), pretext)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.05)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, steps))))
    )
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        batch = pretext_batch(PRETRAIN_SEED, step * batch_size, batch_size, image_size, flip=True)
        losses = _step_losses(model, batch, generator)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        if (step + 1) % 50 == 0 or step == 0:
            log(f"step {step + 1}/{steps}: " + ", ".join(f"{k} {v.item():.4f}" for k, v in losses.items()))
    facts = {
        "pretext": pretext, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
        "image_size": image_size, "seed": seed, "scenes_seen": steps * batch_size,
        "pretrain_scene_seed": PRETRAIN_SEED, "heldout_scene_seed": PRETRAIN_EVAL_SEED,
        "train_seconds": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 1), "cpu_count": os.cpu_count(),
    }
    return model, facts


PRETEXT_TEXT = {
    "dense": "per-pixel region class (ground, road, four object categories), object colour and size class",
    "mim": "reconstruct the pixels of randomly blanked 16-pixel blocks",
    "dense+mim": "per-pixel region, colour and size class and the blanked pixels, from an image with blanked blocks",
}


def export_backbone(model: PretextModel, output_dir: str | os.PathLike, facts: dict[str, Any],
                    metrics: dict[str, float], heldout: int, command: str) -> Path:
    """Write the backbone as a `SwinBackbone` folder (float16 safetensors with its stage norms, so that loading it
    reports no missing weight; preprocessor config; card), written aside and moved into place; an existing folder is
    never replaced."""
    output_dir = Path(output_dir)
    config = SwinConfig(**dict(EMBEDDED_VISION_CONFIG, image_size=facts["image_size"]), out_features=list(STAGE_NAMES))
    backbone = SwinBackbone(config)
    backbone.load_state_dict(model.backbone.state_dict())  # strict: raises on any key that does not map

    def refuse(existing: Path, new: Path) -> None:
        raise FileExistsError(f"{existing} exists: choose a new --output_dir (an earlier backbone is never replaced).")

    def write(tmp: Path) -> None:
        copy.deepcopy(backbone).half().save_pretrained(tmp)
        saved = json.loads((tmp / "config.json").read_text())
        saved["dtype"] = "float32"  # compute in float32 even though the weights are stored in half precision
        (tmp / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        (tmp / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "size": facts["image_size"]}, indent=2
        ) + "\n")
        (tmp / "pretraining.json").write_text(json.dumps({**facts, "heldout_scenes": heldout, "metrics": metrics},
                                                         indent=2) + "\n")
        metric_lines = "\n".join(f"- {k}: {v:.4f}" for k, v in metrics.items())
        card = resources.files(__package__).joinpath("backbone_card_template.md").read_text(encoding="utf-8")
        (tmp / "README.md").write_text(card.format(
            parameters=sum(p.numel() for p in backbone.swin.parameters()), embed_dim=config.embed_dim,
            depths=config.depths, window_size=config.window_size, patch_size=config.patch_size,
            pretext_text=PRETEXT_TEXT[facts["pretext"]], metrics=metric_lines, heldout=heldout, command=command,
            **facts,
        ))

    return atomic_write_folder(output_dir, write, check_replaceable=refuse)
