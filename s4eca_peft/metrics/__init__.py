"""RRSIS metrics: Pr@0.5..0.9, mIoU and oIoU as fractions in [0, 1]. ``RRSIS_IOU_PATH`` is the folder of the
``evaluate`` module built on :mod:`s4eca_peft.metrics.iou` (``evaluate.load(RRSIS_IOU_PATH)`` works offline)."""

from pathlib import Path

from .iou import intersection_and_union, metrics_markdown_table, rrsis_metrics

RRSIS_IOU_PATH: str = str(Path(__file__).resolve().parent / "rrsis_iou")

__all__ = ["RRSIS_IOU_PATH", "intersection_and_union", "metrics_markdown_table", "rrsis_metrics"]
