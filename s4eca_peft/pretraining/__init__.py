"""Pretraining of the embedded vision backbone on synthetic aerial scenes, without language."""

from .labels import COLOUR_CLASSES, IGNORE, REGION_CLASSES, SIZE_CLASSES, scene_label_maps
from .pretext import PRETEXTS, PretextModel, mask_blocks, pretext_losses
from .run import PRETRAIN_EVAL_SEED, PRETRAIN_SEED, evaluate_pretext, export_backbone, pretext_batch, train_pretext

__all__ = [
    "COLOUR_CLASSES", "IGNORE", "PRETEXTS", "PRETRAIN_EVAL_SEED", "PRETRAIN_SEED", "REGION_CLASSES", "SIZE_CLASSES",
    "PretextModel", "evaluate_pretext", "export_backbone", "mask_blocks", "pretext_batch", "pretext_losses",
    "scene_label_maps", "train_pretext",
]
