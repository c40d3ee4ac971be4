"""RRSIS metrics, the one implementation: per-sample intersection/union and the scores the field reports, as
fractions in [0, 1] (definitions: docs/evaluation.md). The ``evaluate`` module in ``rrsis_iou/`` and the training loop
both call it; the loop gathers per-sample counts across processes and calls :func:`rrsis_metrics` once (averaging
per-batch IoUs would weight batches, not samples)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

# Thresholds in tenths, so that "IoU >= X" is decided exactly in integers: 10 * I >= k * U.
_THRESHOLD_TENTHS = (5, 6, 7, 8, 9)
PRECISION_THRESHOLDS: tuple[float, ...] = tuple(k / 10 for k in _THRESHOLD_TENTHS)
METRIC_NAMES: tuple[str, ...] = tuple(f"precision@{t}" for t in PRECISION_THRESHOLDS) + ("mIoU", "oIoU")
METRIC_LABELS: dict[str, str] = {f"precision@{t}": f"Pr@{t}" for t in PRECISION_THRESHOLDS} | {
    "mIoU": "mIoU", "oIoU": "oIoU"}
"""Short names for tables and the model-index, as papers print them."""

Counts = torch.Tensor | np.ndarray | Sequence[int]


def intersection_and_union(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample intersection and union pixel counts of boolean masks ``(batch, height, width)`` (threshold logits
    first); returns two int64 tensors ``(batch,)`` on the input device."""
    for name, mask in (("pred", pred), ("target", target)):
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape (batch, height, width), got {type(mask)}")
        if mask.dtype != torch.bool:
            raise TypeError(f"`{name}` must be a bool tensor (threshold scores first), got dtype {mask.dtype}")
        if mask.dim() != 3:
            raise ValueError(f"`{name}` must have shape (batch, height, width), got {tuple(mask.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.flatten(1), target.flatten(1)
    return (pred & target).sum(dim=1, dtype=torch.int64), (pred | target).sum(dim=1, dtype=torch.int64)


def _as_counts(name: str, values: Counts) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one count per sample (1-D), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"`{name}` must hold integer pixel counts, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if np.any(array < 0):
        raise ValueError(f"`{name}` must be non-negative pixel counts, got minimum {array.min()}")
    return array


def rrsis_metrics(intersections: Counts, unions: Counts, families: Sequence[str] | None = None) -> dict[str, Any]:
    """Scores of a whole split from per-sample pixel counts (all processes gathered).

    Returns ``{"precision@0.5", ..., "precision@0.9", "mIoU", "oIoU"}`` as floats in [0, 1], and ``"num_samples"``;
    with ``families`` (each sample's expression family), also ``"per_family"``: ``{family: the same keys over that
    family's samples}``, families in sorted order.
    """
    inter, union = _as_counts("intersections", intersections), _as_counts("unions", unions)
    scores = _split_metrics(inter, union)
    if families is not None:
        labels = np.asarray([str(family) for family in families])
        if len(labels) != scores["num_samples"]:
            raise ValueError(f"`families` must name one family per sample: got {len(labels)} for "
                             f"{scores['num_samples']} samples")
        scores["per_family"] = {
            family: _split_metrics(inter[labels == family], union[labels == family]) for family in sorted(set(labels))
        }
    return scores


def _split_metrics(inter: np.ndarray, union: np.ndarray) -> dict[str, Any]:
    if inter.shape != union.shape:
        raise ValueError(f"`intersections` and `unions` must have the same length, got {inter.size} and {union.size}")
    if inter.size == 0:
        raise ValueError("`intersections` and `unions` are empty: at least one sample is needed")
    if np.any(inter > union):
        index = int(np.argmax(inter > union))
        raise ValueError(
            f"`intersections` must not exceed `unions`; sample {index} has {inter[index]} > {union[index]}")
    nonempty = union > 0
    metrics: dict[str, float | int] = {
        f"precision@{threshold}": float((nonempty & (10 * inter >= tenths * union)).mean())
        for tenths, threshold in zip(_THRESHOLD_TENTHS, PRECISION_THRESHOLDS)
    }
    total_union = int(union.sum())
    metrics["mIoU"] = float(np.where(nonempty, inter / np.maximum(union, 1), 0.0).mean())
    metrics["oIoU"] = float(inter.sum() / total_union) if total_union > 0 else 0.0
    metrics["num_samples"] = int(inter.size)
    return metrics


def metrics_markdown_table(metrics: Mapping[str, Any], split: str) -> str:
    """A Markdown table of :func:`rrsis_metrics` output for ``split`` in percentages (as papers print them; the
    header says so): one row, and one more per family (``split / family``) when the metrics have ``"per_family"``."""
    if not split:
        raise ValueError("`split` must name the evaluated split (e.g. 'val' or 'test'), got an empty string")
    missing = [name for name in METRIC_NAMES if name not in metrics]
    if missing:
        raise ValueError(
            f"`metrics` lacks {missing}; expected the keys returned by rrsis_metrics: {list(METRIC_NAMES)}")
    header = ["Split", "Samples"] + [f"{METRIC_LABELS[name]} (%)" for name in METRIC_NAMES]
    lines = [header, ["---"] * len(header), _table_row(split, metrics)]
    lines += [_table_row(f"{split} / {family}", scores) for family, scores in metrics.get("per_family", {}).items()]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _table_row(label: str, metrics: Mapping[str, Any]) -> list[str]:
    num_samples = metrics.get("num_samples")
    row = [label, "n/a" if num_samples is None else str(int(num_samples))]
    return row + [f"{100 * float(metrics[name]):.2f}" for name in METRIC_NAMES]
