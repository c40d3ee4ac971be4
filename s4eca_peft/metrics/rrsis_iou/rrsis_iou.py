"""RRSIS IoU metrics (Pr@0.5..0.9, mIoU, oIoU) as an ``evaluate`` module, loaded by path (works offline)::

    metric = evaluate.load(s4eca_peft.metrics.RRSIS_IOU_PATH)  # masks in
    counts = evaluate.load(RRSIS_IOU_PATH, "counts")  # precomputed per-sample intersections/unions in

The math lives in ``s4eca_peft.metrics.iou`` (installed with this package); ``evaluate`` copies only this file.
"""

import datasets
import evaluate
import numpy as np
import torch

from s4eca_peft.metrics.iou import intersection_and_union, rrsis_metrics

_DESCRIPTION = """\
Referring (remote sensing) image segmentation metrics, computed as the RRSIS literature does:
per-sample IoU = I / U (0 when U = 0, i.e. both masks empty); mIoU = mean of the per-sample IoUs;
oIoU = sum(I) / sum(U) over the split (0 when it is 0); precision@X = share of samples with IoU >= X for
X in 0.5, 0.6, 0.7, 0.8, 0.9. All scores are fractions in [0, 1] (multiply by 100 for the percentages papers
print). Samples may have different mask sizes.
"""

_KWARGS_DESCRIPTION = """\
Config "default" (also "masks"):
    predictions (`list` of 2-D boolean arrays): predicted masks, one (height, width) array per sample.
    references (`list` of 2-D boolean arrays): reference masks, each of the same shape as its prediction.
        Masks may differ in size from sample to sample. Non-zero values count as foreground, so threshold
        probabilities or logits first.
Config "counts" (faster for large evaluations: no masks pass through Arrow):
    intersections (`list` of `int`): per-sample intersection pixel counts.
    unions (`list` of `int`): per-sample union pixel counts.
Returns:
    precision@0.5, precision@0.6, precision@0.7, precision@0.8, precision@0.9, mIoU, oIoU (`float` in [0, 1])
    and num_samples (`int`).
Examples:
    >>> metric = evaluate.load(RRSIS_IOU_PATH)
    >>> metric.compute(predictions=[[[True, False]]], references=[[[True, True]]])["mIoU"]
    0.5
"""

_CITATION = """\
Metric definitions as used in referring remote sensing image segmentation benchmarks (RRSIS-D, RefSegRS),
e.g. "Rotated Multi-Scale Interaction Network for Referring Remote Sensing Image Segmentation", CVPR 2024.
"""

_MASK_CONFIGS = ("default", "masks")


def _as_mask(value, name: str, index: int) -> np.ndarray:
    try:
        mask = np.asarray(value, dtype=bool)
    except ValueError as error:  # ragged rows
        raise ValueError(f"`{name}[{index}]` must be a rectangular (height, width) mask: {error}") from None
    if mask.size == 0:
        mask = mask.reshape(0, 0) if mask.ndim < 2 else mask
    if mask.ndim != 2:
        raise ValueError(f"`{name}[{index}]` must be a 2-D (height, width) mask, got shape {mask.shape}")
    return mask


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RrsisIou(evaluate.Metric):
    """Pr@0.5..0.9, mIoU and oIoU of referring segmentation masks (fractions in [0, 1])."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name in _MASK_CONFIGS:
            mask = datasets.Sequence(datasets.Sequence(datasets.Value("bool")))
            features = datasets.Features({"predictions": mask, "references": mask})
            data_format = None  # nested sequences come back as Python lists
        elif self.config_name == "counts":
            count = datasets.Value("int64")
            features = datasets.Features({"intersections": count, "unions": count})
            data_format = "numpy"
        else:
            raise ValueError(
                f"Unknown config_name {self.config_name!r}; expected one of {[*_MASK_CONFIGS, 'counts']}")
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION,
                                   inputs_description=_KWARGS_DESCRIPTION, features=features, format=data_format)

    def _compute(self, predictions=None, references=None, intersections=None, unions=None) -> dict:
        if intersections is not None or unions is not None:
            return rrsis_metrics(intersections, unions)
        inter, union = np.zeros((2, len(predictions)), dtype=np.int64)
        for index, (pred, ref) in enumerate(zip(predictions, references)):
            pred, ref = _as_mask(pred, "predictions", index), _as_mask(ref, "references", index)
            if pred.shape != ref.shape:
                raise ValueError(f"`predictions[{index}]` and `references[{index}]` must have the same shape, "
                                 f"got {pred.shape} and {ref.shape}")
            counts = intersection_and_union(torch.from_numpy(pred)[None], torch.from_numpy(ref)[None])
            inter[index], union[index] = (int(count[0]) for count in counts)
        return rrsis_metrics(inter, union)
