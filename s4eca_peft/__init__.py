"""S4ECA: semantic-driven scale and spatial selection adapters for referring remote sensing segmentation.

Importing this package registers the ``S4ECA`` method with PEFT and the referring-segmentation model with
the ``Auto*`` classes, so ``get_peft_model``, ``PeftModel.from_pretrained`` and ``AutoModel`` work.
"""

from .inference import S4ECASegmenter
from .modeling import (
    ReferringSegmentationConfig,
    ReferringSegmentationModel,
    ReferringSegmentationOutput,
    ReferringSegmentationProcessor,
)
from .modeling.packaged import EMBEDDED_BACKBONE_PATH
from .tuner import S4ECAConfig, S4ECAModel, S4ECAPeftType  # importing the tuner registers S4ECA with peft

__version__ = "0.1.0"

__all__ = ["EMBEDDED_BACKBONE_PATH", "ReferringSegmentationConfig", "ReferringSegmentationModel",
           "ReferringSegmentationOutput", "ReferringSegmentationProcessor", "S4ECAConfig", "S4ECAModel",
           "S4ECAPeftType", "S4ECASegmenter", "__version__"]
