"""The README.md model card of a trained S4ECA adapter, filled from one run.

The template is the packaged ``model_card_template.md`` (``model_cards/adapter_card_template.md`` links to it), a
`string.Template` with ``$name`` placeholders. The run-dependent front matter (``base_model``, ``datasets``,
``model-index``, ``widget``) is serialised by ``huggingface_hub.ModelCardData`` so the Hub parses it as any card's.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..files import is_hub_id, is_hub_id_spelling
from ..metrics.iou import METRIC_LABELS, METRIC_NAMES, metrics_markdown_table
from ..modeling.packaged import REFERENCE_POINTER, is_package_reference

__all__ = ["ModelCardInfo", "render_model_card"]

BUILT_FROM_CONFIG = "built from config"
HUB_URL = "https://huggingface.co"
_DATASET_NAMES = {"rrsisd": "RRSIS-D", "refsegrs": "RefSegRS", "synthetic": "synthetic aerial scenes"}


@dataclass
class ModelCardInfo:
    """What a run measured and how it ran, for `render_model_card`.

    Args:
        model_id: Hub repo id the adapter is published under (usage snippet, model-index, widget address).
        vision_model / text_model: the frozen encoders: a Hub id, a local path, a package reference, or ``None`` /
            ``"built from config"``; only Hub ids become ``base_model``.
        dataset: dataset name as the data loaders spell it (``"rrsisd"``, ``"refsegrs"``, ``"synthetic"``).
        metrics_per_split: ``{split: rrsis_metrics(...) output}``, scores as fractions in [0, 1]; may be empty.
        adapter_size_bytes: size of ``adapter_model.safetensors``.
        hardware: what the run trained on, e.g. ``"1x NVIDIA H100 80GB"``.
        s4eca_config: the adapter configuration (``S4ECAConfig.to_dict()``).
        notes: optional extra Markdown appended to the card.
        widget_image / widget_expression: an example image's path inside the repo (`write_widget_example`) and its
            expression, for the Hub's inference widget; both or neither.
    """

    model_id: str
    vision_model: str | None
    text_model: str | None
    dataset: str
    metrics_per_split: dict[str, dict[str, float]]
    trainable_params: int
    total_params: int
    adapter_size_bytes: int
    hardware: str
    wall_time_s: float
    command: str
    seed: int
    image_size: int
    s4eca_config: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    widget_image: str | None = None
    widget_expression: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.trainable_params <= self.total_params or self.total_params <= 0:
            raise ValueError(f"`trainable_params` must be between 0 and a positive `total_params`, got "
                             f"{self.trainable_params} of {self.total_params}")
        if (self.widget_image is None) != (self.widget_expression is None):
            raise ValueError("`widget_image` and `widget_expression` go together: set both or neither")
        for split, metrics in self.metrics_per_split.items():
            missing = [name for name in METRIC_NAMES if name not in metrics]
            if missing:
                raise ValueError(f"`metrics_per_split[{split!r}]` lacks {missing}; pass the rrsis_metrics output")
            for name in METRIC_NAMES:
                if not (isinstance(metrics[name], int | float) and 0.0 <= metrics[name] <= 1.0):  # NaN fails too
                    raise ValueError(f"`metrics_per_split[{split!r}][{name!r}]` must be a fraction in [0, 1] (as "
                                     f"rrsis_metrics returns it, not a percentage), got {metrics[name]!r}")

    @property
    def trainable_percent(self) -> float:
        """Trainable parameters as a percentage of all parameters."""
        return 100.0 * self.trainable_params / self.total_params


def _hub_id(model: str | None) -> str | None:
    """``model`` if it is a Hub repo id, else ``None`` (built from config, or a local path)."""
    return model if model != BUILT_FROM_CONFIG and is_hub_id(model) else None


def _describe_model(model: str | None) -> str:
    if not model or model == BUILT_FROM_CONFIG:
        return "built from a config, without pretrained weights"
    if is_package_reference(model):
        return f"`{model}` (shipped inside the installed package, not downloaded)"
    if _hub_id(model) is None:
        return f"`{model}` (local weights)"
    return f"[`{model}`](https://huggingface.co/{model})"


def _format_percent(percent: float) -> str:
    if 0 < percent < 0.01:
        return "< 0.01 %"
    return "0 %" if percent == 0 else f"{percent:.2f} %"


def _format_bytes(num_bytes: int) -> str:
    value, unit = float(num_bytes), "B"
    for next_unit in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, next_unit
    shown = f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    return f"{shown} ({num_bytes:,} bytes)"


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    shown = f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"
    return f"{shown} ({whole:,} s)"


def widget_image_url(repo_id: str, image: str, revision: str = "main") -> str:
    """Where the Hub serves ``image`` of the model repo ``repo_id`` at ``revision``: the card widget's ``src``."""
    return f"{HUB_URL}/{repo_id}/resolve/{revision}/{image}"


def address_card(text: str, name: str, revision: str | None = None) -> str:
    """A card written by `render_model_card`, addressed to where the adapter is published: its title, usage line
    and model-index name say ``name`` (a Hub repo id, or a package reference), and its widget images are served by
    the Hub repo ``name`` at ``revision`` (default ``main``); a name that is no Hub repo gets no widget. A card that
    already does is returned as it is (a run trained with ``--hub_model_id`` names its repo from the start)."""
    card = ModelCard(text)
    old = card.data.model_name
    if old not in (None, name):
        card.data.model_name = name
        card.text = card.text.replace(f"\n# {old}\n", f"\n# {name}\n", 1).replace(
            f'from_pretrained("{old}")', f'from_pretrained("{name}")')
    widget = getattr(card.data, "widget", None) or []
    if widget and not is_hub_id_spelling(name):
        card.data.widget = None
    for example in widget if is_hub_id_spelling(name) else []:
        src = example.get("src", "")
        if src.startswith(f"{HUB_URL}/") and "/resolve/" in src:
            image = src.split("/resolve/", 1)[1].split("/", 1)[1]  # after the revision
            example["src"] = widget_image_url(name, image, revision or "main")
    return card.content if card.content != ModelCard(text).content else text


def _card_metadata(info: ModelCardInfo) -> str:
    """YAML of the run-dependent front matter: base_model (with ``base_model_relation: adapter``), datasets,
    model-index and the widget example (its image resolved on the repo's main branch)."""
    base_models = [m for m in (_hub_id(info.vision_model), _hub_id(info.text_model)) if m is not None]
    dataset_id = _hub_id(info.dataset)
    eval_results = [
        EvalResult(task_type="image-segmentation", task_name="Referring remote sensing image segmentation",
                   dataset_type=info.dataset, dataset_name=_DATASET_NAMES.get(info.dataset, info.dataset),
                   dataset_split=split, metric_type=name, metric_name=METRIC_LABELS[name],
                   metric_value=round(float(metrics[name]), 4))
        for split, metrics in info.metrics_per_split.items() for name in METRIC_NAMES
    ]
    extra: dict[str, Any] = {"base_model_relation": "adapter"} if base_models else {}
    if info.widget_image is not None:
        src = widget_image_url(info.model_id, info.widget_image)
        extra["widget"] = [{"src": src, "text": info.widget_expression, "example_title": info.widget_expression}]
    return ModelCardData(base_model=base_models or None, datasets=[dataset_id] if dataset_id else None,
                         model_name=info.model_id if eval_results else None, eval_results=eval_results or None,
                         **extra).to_yaml()


def _evaluation_section(info: ModelCardInfo) -> str:
    dataset_name = _DATASET_NAMES.get(info.dataset, info.dataset)
    if not info.metrics_per_split:
        return f"This run was not evaluated: no scores are reported for {dataset_name}."
    splits = ", ".join(f"`{split}`" for split in info.metrics_per_split)
    # One table: the header of the first table, then each split's rows (its overall row, then one per family).
    tables = [metrics_markdown_table(m, split).splitlines() for split, m in info.metrics_per_split.items()]
    table = "\n".join(tables[0][:2] + [line for lines in tables for line in lines[2:]])
    per_family = any("per_family" in m for m in info.metrics_per_split.values())
    families = (" A row `split / family` scores the samples of one expression family of that split (the "
                "synthetic families are described in the package's data documentation).") if per_family else ""
    return (
        f"Measured by this run on {dataset_name}, split(s) {splits}, with model input {info.image_size} × "
        f"{info.image_size}; no other numbers (e.g. from the S4ECA paper) are reported here. Each sample is one "
        "image-expression pair; the predicted mask is compared with the reference mask pixel by pixel.\n\n"
        f"{table}\n\n"
        "Per-sample IoU = I / U (0 when both masks are empty); mIoU = mean per-sample IoU; oIoU = ΣI / ΣU over the "
        "split; Pr@X = share of samples with IoU ≥ X. The table shows percentages; the `model-index` metadata "
        "stores the same scores as fractions in [0, 1]. Computed with `s4eca_peft.metrics` "
        f"(`evaluate.load(s4eca_peft.metrics.RRSIS_IOU_PATH)`).{families}{_reference_pointer(info.dataset)}"
    )


def _reference_pointer(dataset: str) -> str:
    """For runs on the synthetic scenes: where a longer-trained adapter on them is."""
    return f"\n\n{REFERENCE_POINTER}" if dataset == "synthetic" else ""


def render_model_card(info: ModelCardInfo, template: str | None = None) -> str:
    """The README.md text of an adapter: YAML front matter (``library_name: peft``, model-index) and body.

    ``template``: text with ``$name`` placeholders; defaults to the packaged ``model_card_template.md``.
    """
    values = {
        "card_metadata": _card_metadata(info), "model_id": info.model_id, "hardware": info.hardware,
        "vision_model": _describe_model(info.vision_model), "text_model": _describe_model(info.text_model),
        "dataset": _DATASET_NAMES.get(info.dataset, info.dataset),
        "trainable_params": f"{info.trainable_params:,}", "total_params": f"{info.total_params:,}",
        "trainable_percent": _format_percent(info.trainable_percent),
        "adapter_size": _format_bytes(info.adapter_size_bytes), "evaluation": _evaluation_section(info),
        "seed": info.seed, "image_size": info.image_size, "wall_time": _format_duration(info.wall_time_s),
        "command": info.command.strip(),
        "s4eca_config": json.dumps(info.s4eca_config, indent=2, sort_keys=True, default=str),
        "notes": f"\n{info.notes.strip()}\n" if info.notes.strip() else "",
    }
    if template is None:
        template = resources.files(__package__).joinpath("model_card_template.md").read_text(encoding="utf-8")
    try:
        return string.Template(template).substitute(values)
    except KeyError as error:
        raise ValueError(f"`template` uses an unknown placeholder ${error.args[0]}; known: {sorted(values)}") from None
