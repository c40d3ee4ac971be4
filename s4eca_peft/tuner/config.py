"""Configuration of the S4ECA PEFT method."""

from __future__ import annotations

import enum
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from peft.config import PeftConfig

from ..files import open_regular, parse_json
from .errors import AdapterFileError
from .target_patterns import MAX_PATTERN_REPEATS, check_target_pattern


class S4ECAPeftType(str, enum.Enum):
    """PEFT type of S4ECA (peft's `PeftType` is closed); a `str` enum, it equals the `"S4ECA"` that
    `adapter_config.json` stores and peft's registries are keyed by."""

    S4ECA = "S4ECA"


# Upper bounds, checked before anything is allocated: far above any useful value, far below what exhausts memory
# (`num_queries=10**9` alone would ask for gigabytes).
MAX_NUM_QUERIES = 1024
MAX_WIDTH = 16384  # bottleneck sizes and the proxy width
MAX_BRANCHES = 16
MAX_KERNEL_SIZE = 31
MAX_DILATION = 64
MAX_TARGETS = 4096  # module names in a target list
MAX_PATTERN_LENGTH = 1000  # characters of a target regex
MAX_NAME_LENGTH = 256  # characters of a module name in a target list


def _check_positive_int(name: str, value: object, example: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(
            f"`{name}` must be an integer from 1 to {maximum}, got {value!r}; set e.g. `{name}={example}`."
        )


def _check_targets(name: str, value: object) -> None:
    """A target spec is None, a regex that compiles and matches in bounded time, or a list of module names."""
    if isinstance(value, str):
        if len(value) > MAX_PATTERN_LENGTH:
            raise ValueError(f"`{name}` is a regex of {len(value)} characters; at most {MAX_PATTERN_LENGTH}.")
        try:
            re.compile(value)
            check_target_pattern(value)
        except re.error as error:
            raise ValueError(f"`{name}` is not a valid regex ({error}): {value[:80]!r}.") from error
        except ValueError as error:
            raise ValueError(
                f"`{name}` is refused as a regex: {error} ({value[:80]!r}). List the module names instead, or use "
                f"at most {MAX_PATTERN_REPEATS} quantifiers, none nested and none over an alternation."
            ) from None
    elif isinstance(value, list):
        if len(value) > MAX_TARGETS or not all(isinstance(item, str) and 0 < len(item) <= MAX_NAME_LENGTH
                                               for item in value):
            raise ValueError(
                f"`{name}` must list at most {MAX_TARGETS} module names (strings of 1 to {MAX_NAME_LENGTH} "
                f"characters); got {len(value)} entries of types {sorted({type(item).__name__ for item in value})}."
            )
    elif value is not None:
        raise ValueError(f"`{name}` must be None, a regex or a list of module names, got {type(value).__name__}.")


@dataclass
class S4ECAConfig(PeftConfig):
    """
    Configuration class for [`S4ECAModel`] (S4ECA: Semantic-driven Scale and Spatial Selection for Efficient
    Cross-modal Alignment, 2026; docs/method.md). Only the adapters (and the segmentation head, through
    `modules_to_save`) are trained; being non-linear, they cannot be merged into the base weights.

    Args:
        text_target_modules (`Optional[Union[list[str], str]]`):
            Text blocks that get a text adapter: module names (matched exactly or as a dotted suffix) or a regex on
            the full module name (refused when it could backtrack exponentially, see `target_patterns.py`). Defaults
            to `None`: the last block of each text encoder (see `targets.py`), the most contextual word features.
        vision_target_modules (`Optional[Union[list[str], str]]`):
            Vision blocks that get a vision adapter, given like `text_target_modules`. Defaults to `None`: every block
            of every stage of each vision backbone in the model (see `targets.py`).
        num_queries (`int`, *optional*, defaults to `16`):
            Number of learnable queries, i.e. of language proxies per expression. The paper does not give it.
        text_bottleneck_size (`int`, *optional*, defaults to `128`):
            Width of the text adapter's cross-attention between the queries and the words.
        text_num_heads (`int`, *optional*, defaults to `4`):
            Attention heads of that cross-attention; must divide `text_bottleneck_size`.
        vision_bottleneck_size (`int`, *optional*, defaults to `82`):
            Width `r` of every vision adapter (C -> r -> C); with the other defaults, S4ECA trains 2.4 % of Swin-B +
            BERT-base, as in the paper.
        extractor_kernel_sizes (`list[int]`, *optional*, defaults to `[3, 3, 3]`):
            Kernel size of each depthwise branch of the multi-scale dense extractor (odd integers).
        extractor_dilations (`list[int]`, *optional*, defaults to `[1, 2, 3]`):
            Dilation of each branch, one per kernel size; receptive fields 3, 5 and 7 with the defaults.
        scale_selection (`bool`, *optional*, defaults to `True`):
            Language-guided scale selection. `False` (ablation) averages the branches uniformly.
        spatial_selection (`bool`, *optional*, defaults to `True`):
            Language-guided spatial selection. `False` (ablation) applies no spatial gate. With both selections off
            nothing reads the language proxies (unless `proxy_attention`), and no text adapter is built.
        proxy_attention (`bool`, *optional*, defaults to `False`):
            Pixel-to-proxy attention after the selections: each pixel queries the proxies from its features and its
            (x, y) and adds the softmax-weighted proxy values, writing language and place into the features.
        text_feedback (`bool`, *optional*, defaults to `True`):
            The text adapter also adds what its queries gathered (averaged, through a zero-initialised linear map) to
            every word feature of its block, so that later text features and the head's sentence feature adapt too.
            This package's addition, beyond the abstract; `False` is the paper-faithful text adapter (docs/method.md).
        text_hidden_size (`Optional[int]`):
            Width of the language proxies. Defaults to `None`: the hidden size of the targeted text blocks; needed
            only without a text encoder (proxies then set with `S4ECAModel.set_language_proxies`).
        init_weights (`bool`, *optional*, defaults to `True`):
            Zero-initialise the vision up-projections and the text feedback: the adapted model starts as the base.
        modules_to_save (`Optional[list[str]]`):
            Modules trained fully and saved with the adapter, by full dotted name. Defaults to `None`: the
            `segmentation_head` when the model has one, else nothing; `[]` trains no head.
        targets_from_defaults (`list[str]`, *optional*, defaults to `[]`):
            Filled in when the adapter is created: which of `"text"` and `"vision"` had their targets chosen by
            default. Loading refuses a base model whose defaults give other blocks (a deeper or shallower backbone).
    """

    text_target_modules: list[str] | str | None = field(default=None, metadata={
        "help": "Text blocks to adapt: module names (exact or dotted suffix) or a regex on the full name. None: the "
                "last block of each text encoder (BertLayer, RobertaLayer, CLIP text CLIPEncoderLayer)."})
    vision_target_modules: list[str] | str | None = field(default=None, metadata={
        "help": "Vision blocks to adapt: module names (exact or dotted suffix) or a regex on the full name. None: "
                "every block of every stage (SwinLayer, ConvNextLayer, ResNet layers, ViTLayer, Dinov2Layer)."})
    num_queries: int = field(default=16, metadata={"help": "Learnable queries = language proxies per expression."})
    text_bottleneck_size: int = field(
        default=128, metadata={"help": "Width of the text adapter's query-word cross-attention."})
    text_num_heads: int = field(
        default=4, metadata={"help": "Heads of the text adapter's cross-attention; must divide text_bottleneck_size."})
    vision_bottleneck_size: int = field(
        default=82, metadata={"help": "Width r of every vision adapter (C -> r -> C); 82 gives 2.4 % at Swin-B+BERT."})
    extractor_kernel_sizes: list[int] = field(default_factory=lambda: [3, 3, 3], metadata={
        "help": "Kernel size (odd) of each depthwise branch of the multi-scale dense extractor."})
    extractor_dilations: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={
        "help": "Dilation of each extractor branch, one per kernel size."})
    scale_selection: bool = field(
        default=True, metadata={"help": "Language-guided scale selection; False averages the branches (ablation)."})
    spatial_selection: bool = field(
        default=True, metadata={"help": "Language-guided spatial selection; False applies no gate (ablation)."})
    proxy_attention: bool = field(default=False, metadata={
        "help": "Pixel-to-proxy attention in every vision adapter: pixels (features and (x, y)) attend over the "
                "proxies and add what they read."})
    text_feedback: bool = field(default=True, metadata={
        "help": "Feed the queries' findings back into the word features (zero-initialised); False: proxies only."})
    text_hidden_size: int | None = field(default=None, metadata={
        "help": "Width of the language proxies; None infers it from the text blocks (needed without one)."})
    init_weights: bool = field(default=True, metadata={
        "help": "Zero-initialise the up-projections (vision, text feedback): the model starts as the base."})
    modules_to_save: list[str] | None = field(default=None, metadata={
        "help": "Modules trained fully and saved, by full dotted name. None: `segmentation_head` when the model has "
                "one; [] for none."})
    targets_from_defaults: list[str] = field(default_factory=list, metadata={
        "help": "Set when the adapter is created: which of 'text' and 'vision' had their targets chosen by default. "
                "Loading checks that those defaults give the same blocks on the new base (no deeper backbone)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = S4ECAPeftType.S4ECA
        for name in ("text_target_modules", "vision_target_modules"):
            if isinstance(getattr(self, name), (set, tuple)):
                setattr(self, name, sorted(getattr(self, name)))
            _check_targets(name, getattr(self, name))
        _check_positive_int("num_queries", self.num_queries, 16, MAX_NUM_QUERIES)
        _check_positive_int("text_bottleneck_size", self.text_bottleneck_size, 128, MAX_WIDTH)
        _check_positive_int("text_num_heads", self.text_num_heads, 4, MAX_WIDTH)
        _check_positive_int("vision_bottleneck_size", self.vision_bottleneck_size, 82, MAX_WIDTH)
        if self.text_hidden_size is not None:
            _check_positive_int("text_hidden_size", self.text_hidden_size, 768, MAX_WIDTH)
        if self.text_bottleneck_size % self.text_num_heads:
            raise ValueError(
                f"`text_num_heads` ({self.text_num_heads}) must divide `text_bottleneck_size` "
                f"({self.text_bottleneck_size}); e.g. use text_num_heads=1 or a multiple of it as the size."
            )
        self.targets_from_defaults = sorted(self.targets_from_defaults or [])
        if not set(self.targets_from_defaults) <= {"text", "vision"}:
            raise ValueError(
                f"`targets_from_defaults` may hold 'text' and 'vision', got {self.targets_from_defaults}.")
        for name in ("extractor_kernel_sizes", "extractor_dilations"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) > MAX_BRANCHES:
                raise ValueError(
                    f"`{name}` must be a list of at most {MAX_BRANCHES} integers (one per branch), got "
                    f"{type(value).__name__} of length {len(value) if isinstance(value, (list, tuple)) else '-'}."
                )
            setattr(self, name, list(value))
        if not self.extractor_kernel_sizes or len(self.extractor_kernel_sizes) != len(self.extractor_dilations):
            raise ValueError(
                "`extractor_kernel_sizes` and `extractor_dilations` must be non-empty lists of the same length (one "
                f"entry per branch), got {self.extractor_kernel_sizes} and {self.extractor_dilations}; e.g. "
                "[3, 3, 3] and [1, 2, 3]."
            )
        odd = [k for k in self.extractor_kernel_sizes if isinstance(k, int) and not isinstance(k, bool) and k % 2]
        if len(odd) < len(self.extractor_kernel_sizes) or not all(1 <= kernel <= MAX_KERNEL_SIZE for kernel in odd):
            raise ValueError(
                f"`extractor_kernel_sizes` must hold odd integers from 1 to {MAX_KERNEL_SIZE} (same-size output), "
                f"got {self.extractor_kernel_sizes}; e.g. [3, 3, 3]."
            )
        for dilation in self.extractor_dilations:
            _check_positive_int("extractor_dilations[i]", dilation, 2, MAX_DILATION)
        for name in ("scale_selection", "spatial_selection", "proxy_attention", "init_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` is a switch: set it to True or False, got {getattr(self, name)!r}.")
        if not self.uses_language and self.text_target_modules is not None:
            raise ValueError(
                "With `scale_selection=False`, `spatial_selection=False` and `proxy_attention=False` nothing reads "
                "the language proxies, so no text adapter is built: leave `text_target_modules=None`."
            )
        if self.modules_to_save is not None:
            if isinstance(self.modules_to_save, str) or not all(isinstance(m, str) for m in self.modules_to_save):
                raise ValueError(
                    f"`modules_to_save` must be a list of full dotted module names, got {self.modules_to_save!r}; "
                    'e.g. ["segmentation_head"].'
                )
            self.modules_to_save = list(self.modules_to_save)

    @classmethod
    def from_json_file(cls, path_json_file: str, **kwargs: Any) -> dict[str, Any]:
        """The fields of an ``adapter_config.json``, checked before any module is built: the file must be JSON with
        ``"peft_type": "S4ECA"``, and every value valid. Errors name the file (`AdapterFileError`)."""
        path = Path(path_json_file)
        try:
            with open_regular(path, str(path)) as handle:
                data = parse_json(handle.read(), str(path))
        except (OSError, ValueError) as error:
            raise AdapterFileError(
                f"{error} An adapter config is the JSON object that `save_pretrained` writes.") from error
        if not isinstance(data, dict):
            raise AdapterFileError(
                f"{path}: expected a JSON object of S4ECAConfig fields, got a {type(data).__name__}.")
        if "peft_type" not in data:
            raise AdapterFileError(
                f'{path}: no "peft_type" field; an S4ECA adapter config holds "peft_type": "S4ECA".')
        if data["peft_type"] != S4ECAPeftType.S4ECA:
            found = data["peft_type"]
            shown = repr(found) if isinstance(found, str) and len(found) < 40 else f"a {type(found).__name__}"
            raise AdapterFileError(f'{path}: "peft_type" is {shown}, not "S4ECA": this is not an S4ECA adapter (or '
                                   "its config was edited). Load it with the PEFT method that wrote it.")
        if data.pop("runtime_config", None) is not None:  # runtime-only settings never come from a file (as in peft)
            warnings.warn(
                f"{path_json_file}: its `runtime_config` is ignored (runtime settings are not saved).", stacklevel=2
            )
        names = {f.name for f in fields(cls)}
        try:
            cls(**{key: value for key, value in data.items() if key in names})
        except (TypeError, ValueError) as error:
            raise AdapterFileError(f"{path_json_file}: {error}") from error
        return data

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None,
                        **kwargs: Any) -> S4ECAConfig:
        """Loads ``adapter_config.json`` (see `from_json_file`) and remembers where from, so that later load errors
        can name the folder (``loaded_from``, not a saved field)."""
        config = super().from_pretrained(str(pretrained_model_name_or_path), subfolder=subfolder, **kwargs)
        folder = str(pretrained_model_name_or_path)
        config.loaded_from = os.path.join(folder, subfolder) if subfolder else folder
        return config

    @property
    def target_modules(self) -> None:
        """S4ECA has two kinds of targets: see `text_target_modules` and `vision_target_modules`."""
        return None

    @property
    def uses_language(self) -> bool:
        """Whether the vision adapters read language proxies (a selection or the proxy attention is on)."""
        return self.scale_selection or self.spatial_selection or self.proxy_attention
