"""Datasets for referring remote sensing segmentation: RRSIS-D, RefSegRS and synthetic scenes. Every loader returns a
`datasets.Dataset` with the columns ``image`` (decoded on access), ``mask`` (an ``(H, W)`` boolean array on access),
``expression``, ``image_id``, ``sample_id`` and ``category``."""

from .collate import ReferringCollator
from .masks import decode_rle, encode_mask, read_mask_file, segmentation_to_rle
from .prepare import PUBLISHED_SPLIT_SIZES, prepare_data_main
from .records import COLUMNS, FEATURES, decode_masks, records_to_dataset
from .refsegrs import load_refsegrs, validate_refsegrs
from .rrsisd import load_rrsisd, validate_rrsisd
from .safe_pickle import UnsafePickleError, load_untrusted_pickle
from .synthetic import (
    SceneObject,
    SyntheticScene,
    SyntheticSceneStream,
    generate_scene,
    generate_scene_with_layout,
    make_synthetic_dataset,
    write_refsegrs_layout,
)
from .transforms import PhotometricJitter, TrainTransform, horizontal_flip, swap_left_right
from .validation import PROBLEM_KINDS, SPLITS, DataValidationWarning, Problem, ValidationReport

__all__ = [
    "COLUMNS", "DataValidationWarning", "FEATURES", "PROBLEM_KINDS", "PUBLISHED_SPLIT_SIZES", "PhotometricJitter",
    "Problem", "ReferringCollator", "SPLITS", "SceneObject", "SyntheticScene", "SyntheticSceneStream",
    "TrainTransform", "UnsafePickleError", "ValidationReport", "decode_masks", "decode_rle", "encode_mask",
    "generate_scene", "generate_scene_with_layout", "horizontal_flip", "load_refsegrs", "load_rrsisd",
    "load_untrusted_pickle", "make_synthetic_dataset", "prepare_data_main", "read_mask_file", "records_to_dataset",
    "segmentation_to_rle", "swap_left_right", "validate_refsegrs", "validate_rrsisd", "write_refsegrs_layout",
]
