"""The measurement harness of the cost benchmarks (`efficiency`, `gpu_epoch_cost`, `operator_count`): the measured
model built from configs, its synthetic inputs, and the timed training steps of `s4eca-train`.

A benchmark builds a method with `build_measured`, feeds it `make_inputs`, and times the package's own
`training_step` with `time_training_steps`; what it records beyond that (peak RSS, GPU memory, operators) is its own.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import backbone_configs, build_method, count_parameters, head_parameters, lora_rank_for_budget

BATCH_SIZE = 2
"""Training batch of the CPU measurements."""
TEXT_LENGTH = 20
"""Tokens per expression of the synthetic inputs (half of them padding)."""


def build_base(image_size: int, tiny: bool, seed: int = 0):
    """`ReferringSegmentationModel` with random weights from the benchmarks' backbone configs."""
    import torch

    from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel

    vision, text = backbone_configs(image_size, tiny)
    torch.manual_seed(seed)
    return ReferringSegmentationModel(ReferringSegmentationConfig(vision_config=vision, text_config=text))


def enable_checkpointing(base) -> None:
    """Gradient checkpointing of the encoder blocks, as `s4eca-train --gradient_checkpointing` enables it; the
    encoders stay in eval mode through `set_training_mode` (`ReferringSegmentationModel.encoders_eval`)."""
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def make_inputs(batch: int, image_size: int, vocab_size: int, seed: int = 0) -> dict:
    """A batch of random images, token ids (half-padded) and sparse masks."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.ones(batch, TEXT_LENGTH, dtype=torch.long)
    attention_mask[:, TEXT_LENGTH // 2:] = 0  # half-padded expressions, as short referring expressions are
    return {
        "pixel_values": torch.randn(batch, 3, image_size, image_size, generator=generator),
        "input_ids": torch.randint(5, vocab_size, (batch, TEXT_LENGTH), generator=generator),
        "attention_mask": attention_mask,
        "labels": (torch.rand(batch, 1, image_size, image_size, generator=generator) > 0.9).float(),
    }


@dataclass
class Measured:
    """A method built for measurement, with its parameter counts."""

    base: Any
    model: Any
    lora_rank: int | None
    trainable: int
    head: int

    @property
    def adapter(self) -> int | None:
        """Trainable parameters besides the head (None for full fine-tuning and head-only)."""
        return None if self.model is self.base else self.trainable - self.head

    def optimizer(self):
        """AdamW over the trainable parameters with a constant schedule, as every measured step uses."""
        import torch

        optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4,
                                      weight_decay=0.01)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def build_measured(method: str, image_size: int, tiny: bool, lora_budget: int | None) -> Measured:
    """`method` on a fresh base; ``s4eca_gc`` is S4ECA with gradient checkpointing, LoRA's rank matches
    `lora_budget`."""
    base = build_base(image_size, tiny)
    lora_rank = lora_rank_for_budget(base, lora_budget) if method == "lora" else None
    model = build_method(base, "s4eca" if method == "s4eca_gc" else method, lora_rank=lora_rank)
    measured = Measured(base, model, lora_rank, count_parameters(model, trainable_only=True), head_parameters(model))
    if method == "s4eca_gc":
        enable_checkpointing(base)
    return measured


def timed(call: Callable[[], Any], warmup: int, repeats: int, synchronize: Callable[[], None] = lambda: None
          ) -> tuple[list[float], list[Any]]:
    """Seconds of each of `repeats` calls after `warmup` untimed ones, and every call's result."""
    seconds, outputs = [], []
    for index in range(warmup + repeats):
        synchronize()
        start = time.perf_counter()
        outputs.append(call())
        synchronize()
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds, outputs


def time_training_steps(measured: Measured, batch: dict, accelerator, warmup: int, repeats: int,
                        max_grad_norm: float, synchronize: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The step of `s4eca-train` (`training_step`), timed: ``step_s`` (median), ``step_times``, ``losses`` and
    ``train_step`` (the step itself, for profiling)."""
    from s4eca_peft.training import set_training_mode, training_step

    optimizer, scheduler = measured.optimizer()

    def train_step():
        return training_step(measured.model, batch, accelerator, optimizer, scheduler, max_grad_norm=max_grad_norm)

    set_training_mode(measured.model)
    seconds, losses = timed(train_step, warmup, repeats, synchronize)
    return {"step_s": statistics.median(seconds), "step_times": seconds, "losses": [loss.item() for loss in losses],
            "train_step": train_step, "optimizer": optimizer}


# ---------------------------------------------------------------------------------------------- memory


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0: ``5`` to ``/proc/self/clear_refs``), so that
    the peak read after training is that of training, not of building the model. False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return peak_rss_bytes() <= current_rss_bytes() + (16 << 20)


# ---------------------------------------------------------------------------------------------- prediction


PREDICT_SIZE = 480
"""Side of the images of the prediction benchmarks."""
EXPRESSIONS = [
    "the white storage tank left of the road",
    "the largest building at the top",
    "the red vehicle on the right",
    "the ship next to the harbor",
]


def build_predictor_model(name: str):
    """``(ReferringSegmentationModel, S4ECAConfig)`` of the prediction benchmarks at `PREDICT_SIZE`: ``tiny`` (the test
    suite's tiny Swin + a 2-layer BERT, small S4ECA) or ``paper`` (Swin-B + BERT-base, default S4ECA); random weights,
    adapters not zero-initialised."""
    import torch
    from transformers import BertConfig, SwinConfig

    from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel
    from s4eca_peft.tuner import S4ECAConfig

    if name == "tiny":
        vision = SwinConfig(
            image_size=PREDICT_SIZE, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
            window_size=5,
        )
        text = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
        peft_config = S4ECAConfig(num_queries=4, text_bottleneck_size=16, text_num_heads=2, vision_bottleneck_size=8)
        decoder_dim = 16
    elif name == "paper":
        vision, text = backbone_configs(PREDICT_SIZE, tiny=False, window_size=12)  # Swin-B + BERT-base
        peft_config = S4ECAConfig()
        decoder_dim = 128
    else:
        raise ValueError(f"unknown config {name!r}; use tiny or paper")
    peft_config.init_weights = False  # non-zero adapters (the cost is the same; the outputs differ from the base)
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(vision_config=vision, text_config=text, decoder_dim=decoder_dim)
    return ReferringSegmentationModel(config).eval(), peft_config


def word_tokenizer():
    """A BERT word-piece tokenizer over the words of `EXPRESSIONS` (offline, no download)."""
    from transformers import BertTokenizerFast

    words = sorted({word for text in EXPRESSIONS for word in text.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
