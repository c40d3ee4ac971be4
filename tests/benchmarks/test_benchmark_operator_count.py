"""benchmarks/operator_count.py: what it counts, and its smallest mode end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import operator_count
from benchmarks.common import read_section


def test_compute_ops_leave_out_views_allocations_and_composites():
    x = torch.randn(4, 4)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        (x @ x).t().contiguous()  # matmul -> mm; t -> transpose -> as_strided; contiguous -> clone -> copy_
    counts = operator_count.count_operators(list(prof.events()))
    names = [e.name for e in prof.events() if e.name.startswith("aten::")]
    assert counts == {"aten_ops": len(names), "compute_ops": 2, "compiled_calls": 0}  # mm and copy_
    assert {"aten::matmul", "aten::t", "aten::clone", "aten::empty_like"} <= set(names)


@pytest.mark.slow
def test_smoke_mode_counts_every_eager_variant_and_merges_runs(tmp_path):
    first, docs = tmp_path / "first.json", tmp_path / "page.md"
    operator_count.main(["--smoke", "--no-compile", "--variants", "full", "floor", "s4eca", "--json", str(first)])
    operator_count.main(["--smoke", "--no-compile", "--variants", "full_bf16", "floor_bf16", "s4eca_bf16",
                         "s4eca_bf16_cast", "--merge-json", str(first), "--docs", str(docs),
                         "--json", str(tmp_path / "all.json")])
    merged = json.loads((tmp_path / "all.json").read_text())
    counts = {r["key"]: r for r in merged["results"]}
    assert list(counts) == ["full", "floor", "s4eca", "full_bf16", "floor_bf16", "s4eca_bf16", "s4eca_bf16_cast"]
    for suffix in ("", "_bf16"):
        assert counts["floor" + suffix]["aten_ops"] < counts["full" + suffix]["aten_ops"]
        assert counts["floor" + suffix]["aten_ops"] < counts["s4eca" + suffix]["aten_ops"]
    # under autocast, frozen weights stored in bf16 are no longer cast at every step
    assert counts["s4eca_bf16_cast"]["aten_ops"] < counts["s4eca_bf16"]["aten_ops"]
    assert counts["s4eca"]["vision_adapters"] == 4  # one per block of the tiny Swin

    section = read_section(docs, operator_count.SECTION)
    assert section.count("| fp32 |") == 3 and section.count("| bf16 autocast |") == 4
    assert "Commands: `python -m benchmarks.operator_count --smoke --no-compile --variants full floor s4eca`" in section
    assert "| S4ECA, frozen encoders in bf16 |" in section and "aim <= 0.8x" in section
