"""The referring-segmentation base model that the S4ECA tuner adapts."""

from .configuration import SUPPORTED_TEXT_TYPES, SUPPORTED_VISION_TYPES, ReferringSegmentationConfig
from .modeling import ReferringSegmentationModel, ReferringSegmentationOutput, register_auto_classes, segmentation_loss
from .precision import COMPUTE_DTYPES, cast_frozen_parameters, compute_dtype
from .processing import ReferringSegmentationProcessor

register_auto_classes()

__all__ = [
    "COMPUTE_DTYPES", "SUPPORTED_TEXT_TYPES", "SUPPORTED_VISION_TYPES", "ReferringSegmentationConfig",
    "ReferringSegmentationModel", "ReferringSegmentationOutput", "ReferringSegmentationProcessor",
    "cast_frozen_parameters", "compute_dtype", "register_auto_classes", "segmentation_loss",
]
