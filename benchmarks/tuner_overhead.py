"""Forward latency of the S4ECA-adapted model over the base model (CPU, batch 1), at Swin-B + BERT-base scale.

Also prints the largest difference between the two models' logits at initialisation (zero-initialised adapters).

Both models are built offline from configs (random weights; latency does not depend on the values). The same
inputs go through the base model and through the adapted one, alternating, after warm-up. Medians and best times
are printed; on a shared machine the best times are the ones least disturbed by other load.

    python -m benchmarks.tuner_overhead                    # 480x480, the paper's evaluation size
    python -m benchmarks.tuner_overhead --image-size 192   # quicker
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import transformers
from peft import get_peft_model

import s4eca_peft  # noqa: F401  (registers S4ECA with peft)
from benchmarks.common import backbone_configs
from s4eca_peft.modeling import ReferringSegmentationConfig, ReferringSegmentationModel
from s4eca_peft.tuner import S4ECAConfig


def seconds(model: torch.nn.Module, inputs: dict) -> float:
    start = time.perf_counter()
    model(**inputs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=480, help="square input side (multiple of 32 * 12 / 4)")
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)

    vision, text = backbone_configs(args.image_size, tiny=False, window_size=12)  # Swin-B + BERT-base
    torch.manual_seed(0)
    base = ReferringSegmentationModel(ReferringSegmentationConfig(vision_config=vision, text_config=text))
    base.eval()
    adapted = get_peft_model(copy.deepcopy(base), S4ECAConfig()).eval()
    inputs = {
        "pixel_values": torch.randn(1, 3, args.image_size, args.image_size),
        "input_ids": torch.randint(1000, 2000, (1, args.text_length)),
        "attention_mask": torch.ones(1, args.text_length, dtype=torch.long),
    }
    with torch.inference_mode():
        # warm-up; at initialisation the adapted model must give the base model's logits
        init_diff = (adapted(**inputs).logits - base(**inputs).logits).abs().max().item()
        for model in (base, adapted):
            model(**inputs)
        base_times, adapted_times = [], []
        for _ in range(args.repeats):  # alternate, so that drifts in machine load hit both alike
            base_times.append(seconds(base, inputs))
            adapted_times.append(seconds(adapted, inputs))
    print(
        f"Swin-B + BERT-base, {args.image_size}x{args.image_size}, batch 1, CPU threads={torch.get_num_threads()}, "
        f"{args.repeats} alternating repeats"
    )
    print(f"{'':16}{'median':>10}{'best':>10}")
    print(f"{'base model':16}{1000 * statistics.median(base_times):8.1f}ms{1000 * min(base_times):8.1f}ms")
    print(f"{'S4ECA adapted':16}{1000 * statistics.median(adapted_times):8.1f}ms{1000 * min(adapted_times):8.1f}ms")
    print(f"logits at initialisation: max |adapted - base| = {init_diff:.2e}")
    ratio_median = statistics.median(adapted_times) / statistics.median(base_times)
    print(f"{'latency ratio':16}{ratio_median:9.3f}x{min(adapted_times) / min(base_times):9.3f}x")


if __name__ == "__main__":
    main()
