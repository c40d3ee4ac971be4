"""RRSIS metrics: the `evaluate` module loaded by path offline, against a plain-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s4eca_peft.metrics import RRSIS_IOU_PATH, intersection_and_union, metrics_markdown_table, rrsis_metrics

KEYS = ["precision@0.5", "precision@0.6", "precision@0.7", "precision@0.8", "precision@0.9", "mIoU", "oIoU"]


def reference_metrics(predictions: list[list[list[bool]]], references: list[list[list[bool]]]) -> dict:
    """The field's definitions, written out with loops and no shared code."""
    ious, total_inter, total_union = [], 0, 0
    for pred, ref in zip(predictions, references):
        inter = union = 0
        for pred_row, ref_row in zip(pred, ref):
            for p, r in zip(pred_row, ref_row):
                inter += int(p and r)
                union += int(p or r)
        ious.append(inter / union if union > 0 else 0.0)
        total_inter += inter
        total_union += union
    result = {f"precision@{x}": sum(iou >= x for iou in ious) / len(ious) for x in (0.5, 0.6, 0.7, 0.8, 0.9)}
    result["mIoU"] = sum(ious) / len(ious)
    result["oIoU"] = total_inter / total_union if total_union > 0 else 0.0
    result["num_samples"] = len(ious)
    return result


def assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert set(actual) == set(KEYS) | {"num_samples"}
    assert actual["num_samples"] == expected["num_samples"]
    for key in KEYS:
        assert math.isclose(actual[key], expected[key], abs_tol=1e-12), (key, actual[key], expected[key])
        assert 0.0 <= actual[key] <= 1.0


def random_pairs(seed: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Reference masks and predictions that flip a varying share of pixels: IoUs spread over [0, 1]."""
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(3, 24, size=2))  # sizes differ per sample
        ref = rng.random((height, width)) < rng.uniform(0.1, 0.6)
        flip = rng.random((height, width)) < rng.uniform(0.0, 0.5)
        predictions.append(ref ^ flip)
        references.append(ref)
    return predictions, references


@pytest.fixture(scope="module")
def offline_evaluate(tmp_path_factory):
    """`evaluate`, with every cache in a temporary HF_HOME and the Hub switched off."""
    hf_home = tmp_path_factory.getbasetemp() / "hf_home"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_EVALUATE_OFFLINE": "1",
        }.items():
            mp.setenv(name, value)
        import evaluate

        # evaluate reads its cache paths at import: pin them even if another module imported it first.
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", hf_home / "modules")
        mp.setattr(evaluate.config, "HF_METRICS_CACHE", hf_home / "metrics")
        mp.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        yield evaluate


@pytest.fixture(scope="module")
def metric(offline_evaluate):
    return offline_evaluate.load(RRSIS_IOU_PATH)


def test_module_loads_by_path_and_describes_inputs(metric, offline_evaluate):
    assert type(metric).__name__ == "RrsisIou"
    assert isinstance(metric, offline_evaluate.Metric)
    assert set(metric.features) == {"predictions", "references"}
    assert "fractions in [0, 1]" in metric.description
    assert "predictions" in metric.inputs_description and "intersections" in metric.inputs_description
    counts = offline_evaluate.load(RRSIS_IOU_PATH, "counts")
    assert set(counts.features) == {"intersections", "unions"}
    with pytest.raises(ValueError, match="config_name"):
        offline_evaluate.load(RRSIS_IOU_PATH, "percentages")


@pytest.mark.parametrize("seed", [0, 1])
def test_random_masks_of_different_sizes_match_reference(metric, seed):
    predictions, references = random_pairs(seed, count=40)
    assert len({p.shape for p in predictions}) > 1
    expected = reference_metrics([p.tolist() for p in predictions], [r.tolist() for r in references])
    assert 0 < expected["precision@0.5"] < 1  # the data exercise the thresholds
    assert_metrics_equal(metric.compute(predictions=predictions, references=references), expected)


def test_empty_masks_score_zero(metric):
    empty = np.zeros((4, 5), dtype=bool)
    result = metric.compute(predictions=[empty, empty], references=[empty, empty])
    assert all(result[key] == 0.0 for key in KEYS)
    full = np.ones((2, 3), dtype=bool)
    mixed = metric.compute(predictions=[empty, full], references=[empty, full])
    assert mixed["mIoU"] == 0.5  # the empty pair counts as IoU 0
    assert mixed["oIoU"] == 1.0
    assert mixed["precision@0.9"] == 0.5
    zero_size = np.zeros((0, 0), dtype=bool)
    assert metric.compute(predictions=[zero_size], references=[zero_size])["mIoU"] == 0.0


def test_all_correct_scores_one(metric):
    references = random_pairs(3, count=6)[1]
    references = [r | (np.arange(r.size).reshape(r.shape) == 0) for r in references]  # none empty
    result = metric.compute(predictions=references, references=references)
    assert all(result[key] == 1.0 for key in KEYS)
    assert result["num_samples"] == 6


def test_different_size_samples_by_hand(metric):
    pred_a = np.zeros((5, 7), dtype=bool)
    pred_a[:, :2] = True  # 10 pixels
    ref_a = np.zeros((5, 7), dtype=bool)
    ref_a[:, :3] = True  # 15 pixels -> I = 10, U = 15
    pred_b = np.zeros((9, 3), dtype=bool)
    pred_b[0, 0] = True
    ref_b = np.zeros((9, 3), dtype=bool)
    ref_b[8, 2] = True  # I = 0, U = 2
    result = metric.compute(predictions=[pred_a, pred_b], references=[ref_a, ref_b])
    assert math.isclose(result["mIoU"], (10 / 15 + 0) / 2)
    assert math.isclose(result["oIoU"], 10 / 17)
    assert result["precision@0.6"] == 0.5 and result["precision@0.7"] == 0.0


def test_iou_exactly_at_threshold_counts(metric):
    ref = np.zeros((1, 10), dtype=bool)
    ref[0, :] = True
    pred = ref.copy()
    pred[0, 7:] = False  # IoU = 7 / 10 exactly
    result = metric.compute(predictions=[pred], references=[ref])
    assert result["precision@0.7"] == 1.0 and result["precision@0.8"] == 0.0
    assert result == rrsis_metrics([7], [10])


def test_gathered_counts_equal_compute_on_masks(metric, offline_evaluate):
    predictions, references = random_pairs(7, count=24)
    from_masks = metric.compute(predictions=predictions, references=references)
    # what the training loop does: per-batch counts on padded same-size tensors, gathered, scored once
    inter_parts, union_parts = [], []
    for start in range(0, len(predictions), 5):
        batch = range(start, min(start + 5, len(predictions)))
        pred = torch.zeros(len(batch), 24, 24, dtype=torch.bool)
        ref = torch.zeros(len(batch), 24, 24, dtype=torch.bool)
        for row, index in enumerate(batch):
            height, width = predictions[index].shape
            pred[row, :height, :width] = torch.from_numpy(predictions[index])
            ref[row, :height, :width] = torch.from_numpy(references[index])
        inter, union = intersection_and_union(pred, ref)
        assert inter.dtype == union.dtype == torch.int64 and inter.shape == (len(batch),)
        inter_parts.append(inter)
        union_parts.append(union)
    gathered_inter, gathered_union = torch.cat(inter_parts), torch.cat(union_parts)
    assert rrsis_metrics(gathered_inter, gathered_union) == from_masks
    counts = offline_evaluate.load(RRSIS_IOU_PATH, "counts")
    assert counts.compute(intersections=gathered_inter.tolist(), unions=gathered_union.tolist()) == from_masks


def test_intersection_and_union_counts():
    pred = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
    target = torch.tensor([[[True, False], [True, False]], [[False, False], [False, False]]])
    inter, union = intersection_and_union(pred, target)
    assert inter.tolist() == [1, 0] and union.tolist() == [3, 0]


def test_input_errors_name_the_argument(metric):
    with pytest.raises(TypeError, match="`pred` must be a bool tensor"):
        intersection_and_union(torch.rand(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="`target` must have shape"):
        intersection_and_union(torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"intersections.*must not exceed.*sample 1"):
        rrsis_metrics([1, 5], [2, 4])
    with pytest.raises(ValueError, match="same length"):
        rrsis_metrics([1, 2], [2])
    with pytest.raises(ValueError, match="empty"):
        rrsis_metrics([], [])
    with pytest.raises(ValueError, match=r"predictions\[0\]` and `references\[0\]` must have the same shape"):
        metric.compute(predictions=[np.ones((2, 2), bool)], references=[np.ones((2, 3), bool)])


def test_markdown_table_names_split_and_shows_percentages():
    metrics = rrsis_metrics([7, 1, 0], [10, 4, 3])
    table = metrics_markdown_table(metrics, "test")
    header, rule, row = table.splitlines()
    assert "Pr@0.5 (%)" in header and "mIoU (%)" in header and "oIoU (%)" in header
    assert rule.count("---") == header.count("|") - 1
    cells = dict(
        zip((c.strip() for c in header.strip("|").split("|")), (c.strip() for c in row.strip("|").split("|")))
    )
    assert cells["Split"] == "test" and cells["Samples"] == "3"
    assert cells["mIoU (%)"] == f"{100 * (0.7 + 0.25) / 3:.2f}" == "31.67"
    assert cells["oIoU (%)"] == f"{100 * 8 / 17:.2f}"
    assert cells["Pr@0.7 (%)"] == "33.33" and cells["Pr@0.8 (%)"] == "0.00"
    with pytest.raises(ValueError, match="split"):
        metrics_markdown_table(metrics, "")
    with pytest.raises(ValueError, match="oIoU"):
        metrics_markdown_table({k: v for k, v in metrics.items() if k != "oIoU"}, "val")


def test_per_family_scores_sit_next_to_the_overall_ones_only_when_samples_name_a_family():
    inter, union, families = [7, 1, 0, 5], [10, 4, 3, 5], ["ordinal", "colour", "ordinal", "colour"]
    metrics = rrsis_metrics(inter, union, families)
    assert "per_family" not in rrsis_metrics(inter, union)
    assert {k: v for k, v in metrics.items() if k != "per_family"} == rrsis_metrics(inter, union)
    assert list(metrics["per_family"]) == ["colour", "ordinal"]
    assert metrics["per_family"]["ordinal"] == rrsis_metrics([7, 0], [10, 3])
    assert metrics["per_family"]["colour"]["mIoU"] == (0.25 + 1.0) / 2 and metrics["per_family"]["colour"]["oIoU"] == 6 / 9
    assert set(metrics["per_family"]["colour"]) == {"mIoU", "oIoU", "num_samples"} | {
        f"precision@{t}" for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    rows = metrics_markdown_table(metrics, "val").splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["val", "val / colour", "val / ordinal"]
    assert rows[2].split("|")[2].strip() == "2"
    with pytest.raises(ValueError, match="one family per sample: got 3 for 4 samples"):
        rrsis_metrics(inter, union, families[:3])
