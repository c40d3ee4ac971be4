"""The referring-segmentation base model that the S4ECA tuner adapts."""

from .configuration import (
    SUPPORTED_TEXT_TYPES,
    SUPPORTED_VISION_TYPES,
    ReferringSegmentationConfig,
)
from .modeling import (
    ReferringSegmentationModel,
    ReferringSegmentationOutput,
    register_auto_classes,
    segmentation_loss,
)
from .processing import ReferringSegmentationProcessor

register_auto_classes()

__all__ = [
    "SUPPORTED_TEXT_TYPES",
    "SUPPORTED_VISION_TYPES",
    "ReferringSegmentationConfig",
    "ReferringSegmentationModel",
    "ReferringSegmentationOutput",
    "ReferringSegmentationProcessor",
    "register_auto_classes",
    "segmentation_loss",
]
