"""``s4eca-pretrain-backbone``: rebuild the embedded vision backbone from scratch and print its pretext scores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..modeling.packaged import EMBEDDED_BACKBONE_PATH
from .pretext import PRETEXTS
from .run import evaluate_pretext, export_backbone, train_pretext


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s4eca-pretrain-backbone", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Pretrain the small embedded Swin on synthetic aerial scenes, without language.",
    )
    parser.add_argument("--output_dir", default="outputs/swin-synthetic-aerial",
                        help=f"Where the SwinBackbone folder is written (the shipped one: {EMBEDDED_BACKBONE_PATH}).")
    parser.add_argument("--pretext", choices=PRETEXTS, default="dense", help="What the backbone learns to predict.")
    parser.add_argument("--steps", type=int, default=120,
                        help="Optimizer steps (each reads fresh scenes); 0 exports the random initialisation.")
    parser.add_argument("--batch_size", type=int, default=16, help="Scenes per step.")
    parser.add_argument("--learning_rate", type=float, default=2e-3, help="Peak AdamW learning rate (cosine decay).")
    parser.add_argument("--image_size", type=int, default=128, help="Square scene side in pixels.")
    parser.add_argument("--eval_samples", type=int, default=64, help="Held-out scenes that score the pretext.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the initial weights and the masks.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    for name in ("batch_size", "image_size", "eval_samples"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name} must be positive, got {getattr(args, name)}.")
    if args.steps < 0:
        raise SystemExit(f"--steps must be 0 or more, got {args.steps}.")
    if args.image_size % 32:
        raise SystemExit(f"--image_size must be a multiple of 32 (four Swin stages), got {args.image_size}.")
    if Path(args.output_dir).exists():
        raise SystemExit(f"--output_dir {args.output_dir} exists: choose a new folder (an earlier backbone is never "
                         "replaced).")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, facts = train_pretext(args.pretext, args.steps, args.batch_size, args.learning_rate, args.image_size,
                                 args.seed)
    metrics = evaluate_pretext(model, args.eval_samples, args.image_size)
    print(f"pretext {args.pretext}: {facts['train_seconds']} s training; held-out "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    command = " ".join(["s4eca-pretrain-backbone", *(argv if argv is not None else sys.argv[1:])])
    path = export_backbone(model, args.output_dir, facts, metrics, args.eval_samples, command)
    print(f"wrote {path}")
    return {"facts": facts, "metrics": metrics}
