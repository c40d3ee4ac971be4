"""A filled-in `ModelCardInfo` (metrics per split, sizes, command) shared by the model-card tests."""

from __future__ import annotations

import dataclasses

from s4eca_peft.training.model_card import ModelCardInfo

METRIC_KEYS = ["precision@0.5", "precision@0.6", "precision@0.7", "precision@0.8", "precision@0.9", "mIoU", "oIoU"]

VAL = dict(zip(METRIC_KEYS, [0.8112, 0.7733, 0.7001, 0.5502, 0.2507, 0.66123456, 0.7789])) | {"num_samples": 1740}

TEST = dict(zip(METRIC_KEYS, [0.7912, 0.7431, 0.6610, 0.5112, 0.2211, 0.6444, 0.7654])) | {"num_samples": 3481}


def make_info(**changes) -> ModelCardInfo:
    info = ModelCardInfo(
        model_id="someone/s4eca-swin-bert-rrsisd",
        vision_model="microsoft/swin-base-patch4-window12-384",
        text_model="google-bert/bert-base-uncased",
        dataset="rrsisd",
        metrics_per_split={"val": VAL, "test": TEST},
        trainable_params=4_712_345,
        total_params=201_112_233,
        adapter_size_bytes=18_874_368,
        hardware="1x NVIDIA H100 80GB",
        wall_time_s=7395.4,
        command="accelerate launch examples/train.py --dataset rrsisd --image_size 480 --seed 42",
        seed=42,
        image_size=480,
        s4eca_config={"num_queries": 8, "bottleneck_dim": 64, "target_blocks": "all"},
    )
    return dataclasses.replace(info, **changes)
