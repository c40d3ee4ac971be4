"""The rank-candidates benchmark on the shipped reference adapter: the rank rule agrees with the generator's ordinals
when given the layout's objects, and the head's candidates are measured at each threshold."""

from __future__ import annotations

import pytest

from benchmarks.common import read_section
from benchmarks.rank_candidates import OTHER_SHARES, kernel_reads_the_rank, main
from s4eca_peft.modeling.head import CANDIDATE_SHARE
from s4eca_peft.modeling.packaged import reference_adapter_installed

pytestmark = pytest.mark.slow  # the reference adapter on 48 val scenes


@pytest.mark.skipif(not reference_adapter_installed(), reason="the reference adapter is not installed")
def test_the_rank_rule_picks_every_target_from_the_layouts_objects_and_the_heads_candidates_are_compared(
        tmp_path, minilm_path):
    result = main(["--num_samples", "48", "--docs", str(tmp_path / "page.md")])
    assert result["scenes"] > 0 and result["num_samples"] == 48
    layout = result["candidates"]["layout"]
    assert layout == {"covered": 1.0, "stray": 0.0, "pick": pytest.approx(1.0), "picks_above_half": 1.0}
    by_share = {CANDIDATE_SHARE: "head", **{t: f"head {t}" for t in OTHER_SHARES}}
    covered = [result["candidates"][by_share[t]]["covered"] for t in sorted(by_share)]
    assert covered == sorted(covered, reverse=True)  # a higher share of the best pixel keeps fewer cells
    for name in by_share.values():
        measured = result["candidates"][name]
        assert 0.0 <= measured["pick"] <= 1.0 and measured["stray"] >= 0.0
    section = read_section(tmp_path / "page.md", "rank-candidates")
    assert "Command: `python -m benchmarks.rank_candidates --num_samples 48`" in section
    assert "(what the kernel counts)" in section
    # the kernel's largest weight is read against the expression's side and rank, the model's IoU split by it
    assert 0.0 <= result["kernel_reads_the_rank"] <= 1.0
    assert any(value is not None and 0.0 <= value <= 1.0 for value in result["model_iou"].values())
    assert f"{100 * result['kernel_reads_the_rank']:.0f} % of these scenes" in section


def test_the_kernels_weights_are_read_side_major_like_the_rank_terms():
    from types import SimpleNamespace

    import torch

    from s4eca_peft.modeling.head import MAX_RANK
    from s4eca_peft.modeling.ranks import RANK_SIDES

    scene = SimpleNamespace(rule={"axis": "y", "first": False, "rank": 2})  # "the second ... from the bottom"
    weights = torch.zeros(len(RANK_SIDES) * MAX_RANK)
    weights[RANK_SIDES.index("bottom") * MAX_RANK + 1] = 1.0
    assert kernel_reads_the_rank(weights, scene)
    assert not kernel_reads_the_rank(weights.roll(1), scene)
