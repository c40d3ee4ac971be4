"""RRSIS metrics: per-sample intersection/union and the scores the field reports.

This module is the single implementation of the metric logic. The ``evaluate`` module in ``rrsis_iou/`` and the
training loop both call it: the loop gathers per-sample intersections and unions across processes and calls
:func:`rrsis_metrics` once (averaging per-batch IoUs across processes would weight batches, not samples).

Definitions (as RRSIS papers compute them), all reported as **fractions in [0, 1]**:

- per-sample IoU = I / U, and 0 when U = 0 (both masks empty);
- ``mIoU`` = mean of the per-sample IoUs;
- ``oIoU`` = sum(I) / sum(U), and 0 when sum(U) = 0;
- ``precision@X`` = share of samples whose IoU >= X, for X in 0.5, 0.6, 0.7, 0.8, 0.9.

Given each sample's expression family, the scores also come per family (``"per_family"``), next to the overall ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "METRIC_LABELS",
    "METRIC_NAMES",
    "PRECISION_THRESHOLDS",
    "intersection_and_union",
    "metrics_markdown_table",
    "rrsis_metrics",
]

# Thresholds in tenths, so that "IoU >= X" is decided exactly in integers: 10 * I >= k * U.
_THRESHOLD_TENTHS = (5, 6, 7, 8, 9)
PRECISION_THRESHOLDS: tuple[float, ...] = tuple(k / 10 for k in _THRESHOLD_TENTHS)
METRIC_NAMES: tuple[str, ...] = tuple(f"precision@{t}" for t in PRECISION_THRESHOLDS) + ("mIoU", "oIoU")

# Short names for tables and the model-index, as papers print them.
METRIC_LABELS: dict[str, str] = {f"precision@{t}": f"Pr@{t}" for t in PRECISION_THRESHOLDS} | {
    "mIoU": "mIoU",
    "oIoU": "oIoU",
}


def intersection_and_union(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample intersection and union pixel counts of boolean masks.

    Args:
        pred: predicted masks, bool tensor of shape ``(batch, height, width)`` (threshold logits first).
        target: reference masks, bool tensor of the same shape.

    Returns:
        ``(intersections, unions)``, two int64 tensors of shape ``(batch,)`` on the input device.
    """
    for name, mask in (("pred", pred), ("target", target)):
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape (batch, height, width), got {type(mask)}")
        if mask.dtype != torch.bool:
            raise TypeError(f"`{name}` must be a bool tensor (threshold scores first), got dtype {mask.dtype}")
        if mask.dim() != 3:
            raise ValueError(f"`{name}` must have shape (batch, height, width), got {tuple(mask.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    pred, target = pred.flatten(1), target.flatten(1)
    intersections = (pred & target).sum(dim=1, dtype=torch.int64)
    unions = (pred | target).sum(dim=1, dtype=torch.int64)
    return intersections, unions


def _as_counts(name: str, values: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one count per sample (1-D), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"`{name}` must hold integer pixel counts, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if np.any(array < 0):
        raise ValueError(f"`{name}` must be non-negative pixel counts, got minimum {array.min()}")
    return array


def rrsis_metrics(
    intersections: torch.Tensor | np.ndarray | Sequence[int],
    unions: torch.Tensor | np.ndarray | Sequence[int],
    families: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores of a whole split from per-sample pixel counts.

    Args:
        intersections: per-sample intersection counts, shape ``(num_samples,)`` (all processes gathered).
        unions: per-sample union counts, same shape.
        families: optional expression family of each sample (same length).

    Returns:
        ``{"precision@0.5", ..., "precision@0.9", "mIoU", "oIoU"}`` as floats in [0, 1], and ``"num_samples"``;
        with ``families``, also ``"per_family"``: ``{family: the same keys over that family's samples}``, families
        in sorted order.
    """
    scores = _split_metrics(intersections, unions)
    if families is not None:
        families = [str(family) for family in families]
        if len(families) != scores["num_samples"]:
            raise ValueError(f"`families` must name one family per sample: got {len(families)} for "
                             f"{scores['num_samples']} samples")
        inter, union = np.asarray(_as_counts("intersections", intersections)), _as_counts("unions", unions)
        labels = np.asarray(families)
        scores["per_family"] = {
            family: _split_metrics(inter[labels == family], union[labels == family]) for family in sorted(set(families))
        }
    return scores


def _split_metrics(
    intersections: torch.Tensor | np.ndarray | Sequence[int], unions: torch.Tensor | np.ndarray | Sequence[int]
) -> dict[str, Any]:
    inter = _as_counts("intersections", intersections)
    union = _as_counts("unions", unions)
    if inter.shape != union.shape:
        raise ValueError(f"`intersections` and `unions` must have the same length, got {inter.size} and {union.size}")
    if inter.size == 0:
        raise ValueError("`intersections` and `unions` are empty: at least one sample is needed")
    if np.any(inter > union):
        index = int(np.argmax(inter > union))
        raise ValueError(
            f"`intersections` must not exceed `unions`; sample {index} has {inter[index]} > {union[index]}"
        )
    nonempty = union > 0
    ious = np.where(nonempty, inter / np.maximum(union, 1), 0.0)
    metrics: dict[str, float | int] = {}
    for tenths, threshold in zip(_THRESHOLD_TENTHS, PRECISION_THRESHOLDS):
        hits = nonempty & (10 * inter >= tenths * union)
        metrics[f"precision@{threshold}"] = float(hits.mean())
    total_union = int(union.sum())
    metrics["mIoU"] = float(ious.mean())
    metrics["oIoU"] = float(inter.sum() / total_union) if total_union > 0 else 0.0
    metrics["num_samples"] = int(inter.size)
    return metrics


def metrics_markdown_table(metrics: Mapping[str, Any], split: str) -> str:
    """A Markdown table of :func:`rrsis_metrics` output for ``split``, values shown as percentages: one row, and
    one more per family (``split / family``) when the metrics have ``"per_family"``.

    The metrics themselves are fractions in [0, 1]; the table multiplies by 100 (as papers print them) and says
    so in its header.
    """
    if not split:
        raise ValueError("`split` must name the evaluated split (e.g. 'val' or 'test'), got an empty string")
    missing = [name for name in METRIC_NAMES if name not in metrics]
    if missing:
        raise ValueError(
            f"`metrics` lacks {missing}; expected the keys returned by rrsis_metrics: {list(METRIC_NAMES)}"
        )
    header = ["Split", "Samples"] + [f"{METRIC_LABELS[name]} (%)" for name in METRIC_NAMES]
    lines = [header, ["---"] * len(header), _table_row(split, metrics)]
    lines += [_table_row(f"{split} / {family}", scores) for family, scores in metrics.get("per_family", {}).items()]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _table_row(label: str, metrics: Mapping[str, Any]) -> list[str]:
    num_samples = metrics.get("num_samples")
    row = [label, "n/a" if num_samples is None else str(int(num_samples))]
    return row + [f"{100 * float(metrics[name]):.2f}" for name in METRIC_NAMES]
