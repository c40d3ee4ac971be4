"""Predict one referring-segmentation mask, step by step: image -> tokens -> model -> original size -> overlay.

    python examples/predict.py --adapter owner/s4eca-swin-b-rrsisd --image tile.jpg \\
        --expression "the white storage tank left of the road" --output tile_overlay.png

`--adapter` is a Hub repo id or a folder written by training (`s4eca_peft.adapter_folder.save_for_inference`). The same in
one call is `S4ECASegmenter.from_pretrained(adapter).predict(image, expression)`, or the `s4eca-predict` command;
this script spells the steps out. Without `--image`, a synthetic aerial scene is generated.
"""

from __future__ import annotations

import argparse

import torch

import s4eca_peft  # noqa: F401  (registers S4ECA with peft: needed before loading any S4ECA adapter)
from s4eca_peft.adapter_folder import load_for_inference
from s4eca_peft.inference import overlay_prediction
from s4eca_peft.modeling.image_io import load_image


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="Hub repo id or adapter folder.")
    parser.add_argument("--revision", default=None, help="Branch, tag or commit of the Hub repo.")
    parser.add_argument("--image", default=None, help="Image path (default: a synthetic scene).")
    parser.add_argument("--expression", default=None, help="Referring expression (default: the scene's own).")
    parser.add_argument("--output", default="overlay.png", help="Overlay PNG to write.")
    parser.add_argument("--threshold", type=float, default=0.5)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)

    # step 0: the adapted model (eval mode), its processor and the adapter's metadata
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor, metadata = load_for_inference(args.adapter, revision=args.revision, device=device)

    # step 1: the image as float RGB by the package's conversion rule -> (H, W, 3) in [0, 1]
    if args.image is None:
        from s4eca_peft.data.synthetic import generate_scene

        scene, _, scene_expression, _ = generate_scene(7, image_size=256)
        image = load_image(scene)
        expression = args.expression or scene_expression
    else:
        if args.expression is None:
            parser.error("--expression is needed with --image")
        image = load_image(args.image)
        expression = args.expression
    height, width = image.shape[:2]

    # step 2: square resize + normalisation, and tokens
    #   pixel_values (1, 3, S, S) with S = processor.image_size (the training size); input_ids (1, max_length)
    inputs = processor(images=[image], text=[expression])
    inputs = {key: value.to(device) for key, value in inputs.items()}

    # step 3: text encoder (S4ECA text adapter -> language proxies) -> vision backbone (S4ECA vision adapters)
    #   -> head: logits (1, 1, S/4, S/4)
    with torch.inference_mode():
        logits = model(**inputs).logits

    # step 4: back to the original size: probabilities (H, W) -> mask (H, W) bool
    (probabilities,) = processor.post_process_probabilities(logits, target_sizes=[(height, width)])
    mask = (probabilities > args.threshold).cpu().numpy()

    # step 5: overlay -> RGB PNG of (H, W)
    overlay_prediction(image, mask).save(args.output)
    print(f"{expression!r}: {mask.mean():.1%} of {height}x{width} pixels; overlay written to {args.output}")


if __name__ == "__main__":
    main()
