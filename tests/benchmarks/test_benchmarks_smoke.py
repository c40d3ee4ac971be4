"""The benchmark scripts' smallest modes run end to end (tiny models, 2 steps) and write a table with every method.

Both scripts run at once, as a user runs them (``--smoke``), each writing its marked section of a docs page, its PNG
plot and its raw results into a temporary folder.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from benchmarks.common import METHOD_LABELS, METHODS, module_process, read_section

REPO = Path(__file__).resolve().parents[2]

ACCURACY_RUNS = ["s4eca", "s4eca_no_feedback", "lora", "head", "full", "s4eca_no_scale", "s4eca_no_spatial",
                 "s4eca_no_queries"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def benchmark(name: str, *arguments: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``python -m benchmarks.<name> arguments`` from any folder."""
    prefix, env = module_process(name)
    return [*prefix, *arguments], dict(env, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")


def smoke(script: str, name: str, folder: Path) -> subprocess.Popen:
    command, env = benchmark(script, "--smoke", "--docs", str(folder / f"{name}.md"),
                             "--plot", str(folder / f"benchmark_{name}.png"), "--json", str(folder / f"{name}.json"))
    return subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-4000:]


@pytest.mark.slow
def test_benchmark_smoke_modes_write_tables_with_every_method(tmp_path):
    efficiency, accuracy = smoke("efficiency", "efficiency", tmp_path), smoke("accuracy_synthetic", "accuracy",
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
    for section, script in ((efficiency_section, "efficiency"), (accuracy_section, "accuracy_synthetic")):
        assert f"Command: `python -m benchmarks.{script} --smoke`" in section and "Machine: " in section
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
    assert list(scored) == ACCURACY_RUNS
    for run, seeds in scored.items():
        assert len(seeds) == 1 and seeds[0]["run"] == run
        r = seeds[0]
        assert r["steps"] == 2 and r["test"]["num_samples"] == r["val"]["num_samples"] == 4
        assert 0.0 <= r["test"]["mIoU"] <= 1.0 and math.isfinite(r["final_loss"])


@pytest.mark.slow
def test_gpu_epoch_cost_smoke_mode_measures_every_method_and_trains_end_to_end(tmp_path):
    command, env = benchmark("gpu_epoch_cost", "--smoke", "--end-to-end", "--scaling-batch-sizes", "2", "--docs",
                             str(tmp_path / "reproduce.md"), "--json", str(tmp_path / "cost.json"))
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = json.loads((tmp_path / "cost.json").read_text())
    measured = {r["method"]: r for r in output["results"]}
    assert sorted(measured) == sorted(["s4eca", "s4eca_gc", "full", "lora", "head"])
    assert measured["lora"]["adapter"] == pytest.approx(measured["s4eca"]["adapter"], rel=0.05)
    assert all(r["step_s"] > 0 and r["eval_batch_s"] > 0 for r in measured.values())
    assert [(r["method"], r["batch_size"]) for r in output["scaling"]] == [("s4eca", 2), ("full", 2), ("head", 2)]
    assert output["end_to_end"]["train_steps"] == 4 and output["end_to_end"]["train_samples_per_second"] > 0
    section = read_section(tmp_path / "reproduce.md", "gpu-epoch-cost")
    assert "Command: `python -m benchmarks.gpu_epoch_cost --smoke --end-to-end --scaling-batch-sizes 2`" in section
    assert "float32 (no autocast on CPU)" in section  # bf16 only where it has fast kernels (CUDA)
    for method in measured:
        assert f"| {METHOD_LABELS[method]}" in section


@pytest.mark.slow  # a subprocess that imports the benchmark stack
def test_reproduce_page_shows_what_the_gpu_script_prints_from_its_raw_figures(tmp_path):
    """docs/reproduce.md's GPU figures are the script's rendering of the committed raw measurements."""
    page = tmp_path / "reproduce.md"
    page.write_text((REPO / "docs" / "reproduce.md").read_text())
    raw = REPO / "benchmarks" / "results" / "gpu_epoch_cost_h200.json"
    command, env = benchmark("gpu_epoch_cost", "--from-json", str(raw), "--docs", str(page))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert page.read_text() == (REPO / "docs" / "reproduce.md").read_text()
    section = read_section(page, "gpu-epoch-cost")
    assert "NVIDIA H200" in section and section in result.stdout


def test_accuracy_rows_are_mean_and_spread_over_seeds_and_comparisons_name_the_spread():
    from benchmarks.accuracy_synthetic import results_table
    from benchmarks.synthetic_runs import comparisons, mean_std

    def result(run: str, val: float, test: float) -> dict:
        metrics = {"mIoU": val, "oIoU": val, "precision@0.5": val, "precision@0.7": val}
        return {"run": run, "trainable": 10, "total": 100, "lora_rank": None, "final_loss": 0.5, "train_s": 1.0,
                "val": metrics, "test": {**metrics, "mIoU": test}}

    results = {"s4eca": [result("s4eca", 0.50, 0.5), result("s4eca", 0.54, 0.5)],
               "head": [result("head", 0.40, 0.4), result("head", 0.42, 0.4)],
               "lora": [result("lora", 0.49, 0.4), result("lora", 0.53, 0.4)]}
    mean, std = mean_std([50.0, 54.0])
    assert mean == 52.0 and abs(std - 2.8284271) < 1e-6
    assert "| 52.00 ± 2.83 |" in results_table(results)
    head, lora = comparisons(results, "val")
    assert "+11.00 for S4ECA" in head and "S4ECA above, beyond the seed spread" in head
    assert "+1.00 for S4ECA" in lora and "within the seed spread" in lora


@pytest.mark.slow
def test_default_run_smoke_writes_both_runs_and_keeps_the_first(tmp_path):
    command, env = benchmark("default_run", "--smoke", "--docs", str(tmp_path / "training.md"), "--keep",
                             str(tmp_path / "kept"))
    process = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    section = read_section(tmp_path / "training.md", "default-run")
    assert "Command: `python -m benchmarks.default_run --smoke`" in section
    assert "| `accelerate launch examples/train.py` --max_train_steps 4" in section
    assert "| same with `--constant_expression object` (no language) |" in section
    assert json.loads((tmp_path / "kept" / "eval_results.json").read_text())["test"]["num_samples"] == 8


def test_choices_on_val_table_groups_seeds_and_shows_the_adapters_language_use():
    from benchmarks.adapter_variants import RUNNABLE, VARIANTS, render

    assert all(v["run"] in ACCURACY_RUNS for v in VARIANTS.values())
    assert "s4eca_lr_2e-3" in RUNNABLE and not any("patch" in VARIANTS[name] for name in RUNNABLE)

    def result(variant: str, seed: int, miou: float, mismatched: float | None) -> dict:
        return {"variant": variant, "seed": seed, "steps": 192, "learning_rate": 2e-3, "trainable": 1000,
                "val": {"mIoU": miou, "oIoU": miou}, "command": f"python benchmarks/adapter_variants.py --seeds {seed}",
                "val_mismatched_proxies": {"mIoU": mismatched} if mismatched is not None else None}

    table = render([result("s4eca_lr_2e-3", 0, 0.40, 0.39), result("s4eca_lr_2e-3", 1, 0.42, 0.40),
                    result("head_lr_2e-3", 1, 0.38, None)])
    s4eca_row, head_row = [line for line in table.splitlines() if line.startswith("| S4ECA") or line.startswith("| head")]
    assert "| 0, 1 | 41.00 ± 1.41 |" in s4eca_row and "| +1.50 |" in s4eca_row
    assert "`python benchmarks/adapter_variants.py --seeds 0`; `python benchmarks/adapter_variants.py --seeds 1`" in s4eca_row
    assert "| 1 | 38.00 | 38.00 | - |" in head_row


@pytest.mark.slow
def test_learning_curve_smoke_stores_each_run_and_a_rerun_skips_them(tmp_path):
    from benchmarks.learning_curve import PROTOCOL_RUNS

    # one run of each kind: S4ECA, head-only, and two protocol changes (`PROTOCOL_RUNS`): a head option, a learning rate
    methods = ["s4eca", "head", "s4eca_place_kernel", "lora_lr_5e-4"]
    command, env = benchmark("learning_curve", "--smoke", "--methods", *methods, "--results",
                             str(tmp_path / "curve.json"), "--docs", str(tmp_path / "page.md"), "--plot",
                             str(tmp_path / "curve.png"))
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = {(r["method"], r["seed"]): r for r in json.loads((tmp_path / "curve.json").read_text())}
    assert sorted(runs) == sorted((method, 0) for method in methods)
    assert runs["lora_lr_5e-4", 0]["protocol"]["learning_rate"] == PROTOCOL_RUNS["lora_lr_5e-4"][1]["learning_rate"]
    assert runs["lora_lr_5e-4", 0]["lora_rank"] and not runs["head", 0]["lora_rank"]
    for (method, _), run in runs.items():
        assert run["done"] and [p["step"] for p in run["points"]] == [2, 4]
        assert all(0.0 <= p["mIoU"] <= 1.0 for p in run["points"])
        # language use is measured where there are proxies to mismatch
        assert all((p["mIoU_drop"] is not None) == method.startswith("s4eca") for p in run["points"])
    assert runs["s4eca_place_kernel", 0]["trainable"] - runs["s4eca", 0]["trainable"] == 4 * (384 + 1)  # MiniLM
    section = read_section(tmp_path / "page.md", "learning-curve")
    assert "Command: `python -m benchmarks.learning_curve --smoke`" in section
    for method in methods:
        assert f"| {METHOD_LABELS[method]} | 1 |" in section
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG_MAGIC

    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("skipped") == len(methods), again.stdout[-3000:]


def test_learning_curve_table_averages_the_best_points_and_shows_what_was_not_measured():
    from benchmarks.learning_curve import table

    def point(step: int, miou: float, drop: float | None, families: dict[str, float]) -> dict:
        return {"step": step, "mIoU": miou, "oIoU": miou, "mIoU_drop": drop, "per_family": families,
                "per_family_mIoU_drop": {f: drop for f in families} if drop is not None else {}}

    records = [
        {"method": "s4eca", "seed": 0, "protocol": {"image_size": 64, "num_eval_samples": 6},
         "points": [point(192, 0.30, 0.02, {"colour": 0.4, "anchor": 0.2}),
                                                  point(384, 0.40, 0.04, {"colour": 0.5, "anchor": 0.3})]},
        {"method": "s4eca", "seed": 1, "points": [point(192, 0.50, 0.06, {"colour": 0.6, "anchor": 0.4})]},
        {"method": "head", "seed": 0, "points": [point(192, 0.20, None, {})]},
    ]
    rows = {line.split(" | ")[0]: line for line in table(records).splitlines()[2:]}
    s4eca, head = rows[f"| {METHOD_LABELS['s4eca']}"], rows[f"| {METHOD_LABELS['head']}"]
    # best points: step 384 (0.40) and step 192 (0.50); relational = anchor only
    assert "| 2 | 288 | 45.00 | 40.00 to 50.00 | 45.00 | +5.00 | 35.00 | +5.00 | 55.00 | 35.00 |" in s4eca
    assert "| 1 | 192 | 20.00 | - | 20.00 | - | - | - | - | - |" in head
    # once a seed has finished, a seed still early on its curve is left out of the row
    records[0]["done"] = True
    rows = {line.split(" | ")[0]: line for line in table(records).splitlines()[2:]}
    assert "| 1 | 384 | 40.00 | - | 40.00 | +4.00 |" in rows[f"| {METHOD_LABELS['s4eca']}"]


def test_the_aims_picture_draws_the_compared_runs_alone(tmp_path):
    from benchmarks.learning_curve import AIM_PANELS, aim_curves, plot_aims, section

    def point(step: int, miou: float, drop: float | None) -> dict:
        families = {"colour": miou, "anchor": miou - 0.1, "ordinal": miou - 0.2, "comparison": miou - 0.3}
        return {"step": step, "mIoU": miou, "oIoU": miou, "mIoU_drop": drop, "per_family": families,
                "per_family_mIoU_drop": {}}

    protocol = {"image_size": 64, "num_eval_samples": 6, "batch_size": 2, "steps": 4, "eval_every": 2}
    others = [{"method": "s4eca", "seed": 0, "done": True, "command": "c", "device": "cpu", "protocol": protocol,
               "points": [point(2, 0.3, 0.01)]}]
    assert aim_curves(others) == {} and not plot_aims(others, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists() and "_aims.png" not in section(others, "curve.png")
    records = [*others, {**others[0], "method": "lora_rank_product", "points": [point(2, 0.5, None),
                                                                               point(4, 0.6, None)]}]
    curves = aim_curves(records)
    assert list(curves) == ["lora_rank_product"]  # the other aims' runs are not stored; plain S4ECA is not one
    (seed,) = curves["lora_rank_product"]
    overall, relational, language = (seed[panel] for panel in AIM_PANELS)
    assert overall == [(2, 50.0), (4, 60.0)] and language == []  # LoRA has no proxies to mismatch
    assert relational == [(2, pytest.approx(30.0)), (4, pytest.approx(40.0))]  # anchor, ordinal, comparison
    assert plot_aims(records, tmp_path / "curve_aims.png")
    assert (tmp_path / "curve_aims.png").read_bytes()[:8] == PNG_MAGIC
    assert "](images/curve_aims.png)" in section(records, "curve.png")


def test_the_category_floor_masks_every_object_of_the_named_category():
    from benchmarks.learning_curve import category_only
    from s4eca_peft.data.loaders import load_split

    floor = category_only(64, 6)
    val = load_split("synthetic", "val", image_size=64, num_samples=6)
    # the target is one of the two to four objects of its category that the floor masks: never all, never nothing
    assert 0.1 < floor["mIoU"] < 0.9
    assert sorted(floor["per_family"]) == sorted(set(val["family"]))


def test_a_run_state_saved_and_loaded_continues_as_the_uninterrupted_run(tmp_path):
    import torch
    import transformers

    from benchmarks.resume import load_run_state, save_run_state, saved_step

    def run() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
        model[0].requires_grad_(False)  # frozen weights are not part of the state
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
        return model, optimizer, transformers.get_scheduler("cosine", optimizer, num_warmup_steps=1,
                                                            num_training_steps=6)

    def steps(model, optimizer, scheduler, first: int, last: int) -> None:
        for step in range(first, last):
            x = torch.full((2, 4), float(step))
            model(x).square().mean().backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()

    straight = run()
    steps(*straight, 0, 6)
    first = run()
    steps(*first, 0, 3)
    save_run_state(tmp_path / "state", 3, *first)
    assert saved_step(tmp_path / "state") == 3 and saved_step(tmp_path / "none") == 0
    resumed = run()
    assert load_run_state(tmp_path / "state", *resumed) == 3
    assert not torch.equal(resumed[0][1].weight, straight[0][1].weight)
    steps(*resumed, 3, 6)
    for a, b in zip(resumed[0].parameters(), straight[0].parameters()):
        torch.testing.assert_close(a, b)
    assert resumed[2].get_last_lr() == straight[2].get_last_lr()


def test_a_learning_curve_point_takes_language_use_per_family_from_the_mismatched_evaluation():
    from benchmarks.learning_curve import val_point

    today = val_point(192, {"val": {"mIoU": 0.5, "oIoU": 0.4}})
    assert today["per_family"] == today["per_family_mIoU_drop"] == {} and today["mIoU_drop"] is None
    val = {"mIoU": 0.5, "oIoU": 0.4, "per_family": {"anchor": {"mIoU": 0.3}, "colour": {"mIoU": 0.7}}}
    mismatched = {"mIoU": 0.45, "per_family": {"anchor": {"mIoU": 0.1}, "colour": {"mIoU": 0.7}}}
    point = val_point(192, {"val": val, "val_mismatched_proxies": mismatched})
    assert point["per_family"] == {"anchor": 0.3, "colour": 0.7}
    assert point["mIoU_drop"] == pytest.approx(0.05)
    assert point["per_family_mIoU_drop"] == pytest.approx({"anchor": 0.2, "colour": 0.0})


@pytest.mark.slow
def test_a_learning_curve_run_killed_after_an_evaluation_continues_from_it(tmp_path):
    import os
    import signal
    import time

    command, env = benchmark("learning_curve", "--smoke", "--methods", "lora", "--max_steps", "6", "--results",
                             "curve.json", "--runs_dir", "runs", "--docs", "page.md", "--plot", "curve.png")
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    state = tmp_path / "runs" / "lora-seed0" / "state.json"
    deadline = time.monotonic() + 300
    while not state.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its run, after the evaluation at step 2
    first.wait()
    assert [p["step"] for p in json.loads((tmp_path / "curve.json").read_text())[0]["points"]] == [2]

    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "continuing after step 2" in again.stdout
    (run,) = json.loads((tmp_path / "curve.json").read_text())
    assert run["done"] and [p["step"] for p in run["points"]] == [2, 4, 6]
    assert not (tmp_path / "runs" / "lora-seed0").exists()
