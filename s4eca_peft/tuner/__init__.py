"""The S4ECA PEFT method, laid out like peft's own tuners. Importing it registers S4ECA in peft's registries
(idempotently; peft's `PeftType` enum is closed, so S4ECA brings its own [`S4ECAPeftType`]).
"""

from peft import mapping as _peft_mapping

from .checks import check_adapter_folder
from .compilation import compile_adapters
from .config import S4ECAConfig, S4ECAPeftType
from .errors import AdapterBackboneMismatchError, AdapterFileError
from .language_use import MismatchedProxies, mismatch_proxies
from .layer import S4ECALayer, S4ECATextLayer, S4ECAVisionLayer
from .model import S4ECAModel
from .routing import CallState, S4ECARouting
from .targets import TEXT_BLOCK_CLASSES, VISION_BLOCK_CLASSES

__all__ = [
    "AdapterBackboneMismatchError",
    "AdapterFileError",
    "CallState",
    "MismatchedProxies",
    "S4ECAConfig",
    "S4ECALayer",
    "S4ECAModel",
    "S4ECAPeftType",
    "S4ECARouting",
    "S4ECATextLayer",
    "S4ECAVisionLayer",
    "TEXT_BLOCK_CLASSES",
    "VISION_BLOCK_CLASSES",
    "check_adapter_folder",
    "compile_adapters",
    "mismatch_proxies",
    "register_s4eca",
]


def register_s4eca() -> None:
    """Register S4ECA in peft's config, tuner and prefix registries (safe to call repeatedly)."""
    peft_type = S4ECAPeftType.S4ECA
    _peft_mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = S4ECAConfig
    _peft_mapping.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = S4ECAModel
    _peft_mapping.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = S4ECAModel.prefix


register_s4eca()
