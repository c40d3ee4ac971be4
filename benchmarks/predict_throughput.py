"""Predictions per second of `S4ECASegmenter.predict` on CPU at 480x480, adapted over base, in the same run.

End to end as a user calls it: image conversion, resize and normalisation, tokenisation, forward, and post-processing
back to the 480x480 original size. The base segmenter wraps the same frozen base model without adapters; both see the
same images and expressions, alternating, after a warm-up, and the median time of each is kept.

Configs (random weights, built from configs offline; speed does not depend on the values):

* ``tiny``: the test suite's tiny Swin (embed 16, depths 1-1-1-1) + a 2-layer BERT of width 32, small S4ECA;
* ``paper``: Swin-B (embed 128, depths 2-2-18-2, heads 4-8-16-32, window 12) + BERT-base, default S4ECAConfig.

    python -m benchmarks.predict_throughput                          # both configs, 2 images x 3 repeats
    python -m benchmarks.predict_throughput --configs tiny --images 8 --repeats 5 --batch-size 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch
import transformers
from peft import get_peft_model

from benchmarks.common import machine_info, machine_line
from benchmarks.harness import EXPRESSIONS, PREDICT_SIZE, build_predictor_model, word_tokenizer
from s4eca_peft import ReferringSegmentationProcessor
from s4eca_peft.inference import S4ECASegmenter


def seconds(segmenter: S4ECASegmenter, images: list[np.ndarray], expressions: list[str]) -> float:
    start = time.perf_counter()
    segmenter.predict(images, expressions)
    return time.perf_counter() - start


def run(name: str, num_images: int, repeats: int, batch_size: int) -> dict:
    base, peft_config = build_predictor_model(name)
    adapted = get_peft_model(copy.deepcopy(base), peft_config).eval()
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    processor = ReferringSegmentationProcessor(word_tokenizer(), image_size=PREDICT_SIZE, max_length=20)
    segmenters = {
        "base": S4ECASegmenter(base, processor, batch_size=batch_size),
        "adapted": S4ECASegmenter(adapted, processor, batch_size=batch_size),
    }
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (PREDICT_SIZE, PREDICT_SIZE, 3), dtype=np.uint8) for _ in range(num_images)]
    expressions = [EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(num_images)]
    for segmenter in segmenters.values():  # warm-up
        segmenter.predict(images[:batch_size], expressions[:batch_size])
    times: dict[str, list[float]] = {"base": [], "adapted": []}
    for _ in range(repeats):
        for key, segmenter in segmenters.items():
            times[key].append(seconds(segmenter, images, expressions))
    rate = {key: num_images / statistics.median(values) for key, values in times.items()}
    return {
        "config": name,
        "base_parameters": sum(p.numel() for p in base.parameters()),
        "trainable_parameters": trainable,
        "base_predictions_per_s": rate["base"],
        "adapted_predictions_per_s": rate["adapted"],
        "adapted_over_base": rate["adapted"] / rate["base"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    parser.add_argument("--images", type=int, default=2, help="Images per timed predict call.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per segmenter (median kept).")
    parser.add_argument("--batch-size", type=int, default=1, help="Images per forward pass.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# predict throughput, {PREDICT_SIZE}x{PREDICT_SIZE} images, batch {args.batch_size}, {args.images} images x "
        f"{args.repeats} repeats. Machine: {machine_line(machine_info(torch.get_num_threads()))}"
    )
    print("| config | base params | trainable | base pred/s | adapted pred/s | adapted / base |")
    print("|---|---|---|---|---|---|")
    results = []
    for name in args.configs:
        result = run(name, args.images, args.repeats, args.batch_size)
        results.append(result)
        print(
            f"| {name} | {result['base_parameters'] / 1e6:.1f} M | {result['trainable_parameters'] / 1e6:.2f} M | "
            f"{result['base_predictions_per_s']:.2f} | {result['adapted_predictions_per_s']:.2f} | "
            f"{result['adapted_over_base']:.2f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
