"""The benchmark scripts' smallest modes run end to end (tiny models, 2 steps) and write a table with every method.

Both scripts run at once, as a user runs them (``--smoke``), each writing its marked section of a docs page, its PNG
plot and its raw results into a temporary folder.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from common import METHOD_LABELS, METHODS, read_section  # noqa: E402

ACCURACY_RUNS = ["s4eca", "full", "lora", "head", "s4eca_no_scale", "s4eca_no_spatial", "s4eca_no_queries"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def smoke(script: str, name: str, folder: Path) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--docs", str(folder / f"{name}.md"),
               "--plot", str(folder / f"benchmark_{name}.png"), "--json", str(folder / f"{name}.json")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-4000:]


def test_benchmark_smoke_modes_write_tables_with_every_method(tmp_path):
    efficiency, accuracy = smoke("efficiency.py", "efficiency", tmp_path), smoke("accuracy_synthetic.py", "accuracy",
                                                                                 tmp_path)
    finish(efficiency)
    finish(accuracy)

    efficiency_section = read_section(tmp_path / "efficiency.md", "efficiency")
    accuracy_section = read_section(tmp_path / "accuracy.md", "accuracy")
    assert efficiency_section is not None and accuracy_section is not None
    for method in METHODS:
        assert f"| {METHOD_LABELS[method]}" in efficiency_section
    for run in ACCURACY_RUNS:
        assert f"| {METHOD_LABELS[run]}" in accuracy_section
    for section, script in ((efficiency_section, "efficiency.py"), (accuracy_section, "accuracy_synthetic.py")):
        assert f"Command: `python benchmarks/{script} --smoke`" in section and "Machine: " in section
    for name in ("efficiency", "accuracy"):
        assert (tmp_path / f"benchmark_{name}.png").read_bytes()[:8] == PNG_MAGIC

    measured = {r["method"]: r for r in json.loads((tmp_path / "efficiency.json").read_text())["results"]}
    assert sorted(measured) == sorted([*METHODS, "s4eca_gc"])
    assert measured["full"]["trainable"] == measured["full"]["total"]
    assert measured["head"]["trainable"] == measured["head"]["head"]
    assert 0 < measured["s4eca"]["trainable"] < measured["full"]["trainable"]
    assert measured["s4eca_gc"]["trainable"] == measured["s4eca"]["trainable"]
    assert measured["lora"]["lora_rank"] >= 1
    for r in measured.values():
        assert r["step_s"] > 0 and r["latency_s"] > 0 and r["peak_rss"] > 0 and r["saved_bytes"] > 0
        assert all(math.isfinite(loss) for loss in r["losses"])

    scored = json.loads((tmp_path / "accuracy.json").read_text())["results"]
    assert [r["run"] for r in scored] == ACCURACY_RUNS
    for r in scored:
        assert r["steps"] == 2 and r["test"]["num_samples"] == r["val"]["num_samples"] == 4
        assert 0.0 <= r["test"]["mIoU"] <= 1.0 and math.isfinite(r["final_loss"])
