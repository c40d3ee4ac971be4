"""The rank-candidates benchmark on the shipped reference adapter: the rank rule agrees with the generator's ordinals
when given the layout's objects, and the head's candidates are measured at each threshold."""

from __future__ import annotations

import pytest

from benchmarks.common import read_section
from benchmarks.rank_candidates import OTHER_SHARES, main
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
