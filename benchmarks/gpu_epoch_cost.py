"""GPU memory and time per epoch of the paper protocol: Swin-B + BERT-base at 480x480, batch 8, bf16.

Two measurements, on one CUDA GPU:

* **steps** (all methods, one process, one after the other): Swin-B (window 12) + BERT-base built offline from their
  configs (random weights: costs do not depend on the values), 20 tokens, bf16 autocast as ``accelerate launch
  --mixed_precision bf16`` uses (a CPU smoke run stays in float32: `uses_bf16`), AdamW with gradient clipping as
  in `s4eca-train`. For S4ECA, S4ECA with gradient
  checkpointing, full fine-tuning, LoRA at S4ECA's adapter budget and head-only: peak memory allocated by torch over
  the training steps (weights, gradients, optimizer state, activations), time of one training step (median after
  warm-up, CUDA-synchronised) and time of one evaluation batch (32 samples, ``--per_device_eval_batch_size``).
  Time per epoch = train steps x step time + validation batches x batch time, for the published split sizes;
  data loading is left out (it runs in worker processes beside the GPU).
* **end to end** (``--end-to-end``): `s4eca-train` itself on synthetic 480x480 scenes with random Swin-B and
  BERT-base folders written by this script (BERT-base over the synthetic scenes' word vocabulary), 8 data workers:
  its ``train_results.json`` gives samples per second with data loading included, and the peak GPU memory.

``--profile`` adds, for S4ECA and full fine-tuning, the share of a step the GPU is busy, kernels per step and the
operators with the most GPU time; ``--scaling-batch-sizes 16 32`` trains S4ECA, full fine-tuning and head-only at
larger batches too.

    python -m benchmarks.gpu_epoch_cost --end-to-end --profile   # needs a CUDA GPU; ~3 min on an H200
    python -m benchmarks.gpu_epoch_cost --from-json benchmarks/results/gpu_epoch_cost_h200.json   # re-render
    python -m benchmarks.gpu_epoch_cost --smoke --docs /tmp/r.md   # tiny models, CPU or GPU, seconds (tests)

The result goes to the ``gpu-epoch-cost`` section of docs/reproduce.md (``--docs`` writes elsewhere; ``--smoke``
writes nothing unless ``--docs`` is given), the raw figures to ``--json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.common import (
    METHOD_LABELS,
    REPO,
    backbone_configs,
    count_parameters,
    format_count,
    machine_info,
    machine_line,
    markdown_table,
    window_for,
    write_section,
)
from benchmarks.harness import build_measured, make_inputs, time_training_steps, timed

DOCS_PAGE = REPO / "docs" / "reproduce.md"
SECTION = "gpu-epoch-cost"
METHODS_MEASURED = ["s4eca", "s4eca_gc", "full", "lora", "head"]
SCALING_METHODS = ["s4eca", "full", "head"]
EPOCHS = 40
TRAIN_BATCH = 8
EVAL_BATCH = 32
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"image_size": 64, "tiny": True, "warmup": 1, "repeats": 2, "e2e_steps": 4, "e2e_workers": 0},
    "full": {"image_size": 480, "tiny": False, "warmup": 3, "repeats": 10, "e2e_steps": 150, "e2e_workers": 8},
}
GIB = 2**30


def uses_bf16(device) -> bool:
    """bf16 autocast on CUDA, as the paper protocol trains; float32 elsewhere, since bf16 convolutions have no fast
    CPU kernels (a CPU smoke run would time the slow path, not the method)."""
    return device.type == "cuda"


@lru_cache(maxsize=1)
def step_accelerator(cpu: bool):
    """One `Accelerator` for every measured training step of this process (nothing is prepared with it)."""
    from accelerate import Accelerator

    return Accelerator(cpu=cpu)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device) -> int | None:
    import torch

    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def profile_steps(step, device, steps: int = 3) -> dict[str, Any]:
    """Run `step` `steps` times under torch's profiler: the share of the wall time the GPU spent in kernels, the
    kernels launched per step and the ten operators with the most GPU time per step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_us = sum(e.time_range.elapsed_us() for e in kernels)
    operators = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)
    return {
        "gpu_busy": kernel_us / 1e6 / wall,
        "kernels_per_step": len(kernels) / steps,
        "top_operators_ms_per_step": [[e.key[:80], e.self_device_time_total / 1000 / steps] for e in operators[:10]],
    }


def measure(method: str, config: dict[str, Any], device, lora_budget: int | None, batch_size: int = TRAIN_BATCH,
            time_evaluation: bool = True, profile: bool = False) -> dict[str, Any]:
    """Build `method` on a fresh base, train `warmup + repeats` steps and time evaluation batches (32)."""
    import torch

    measured = build_measured(method, config["image_size"], config["tiny"], lora_budget)
    model = measured.model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    vocab = measured.base.config.text_config.vocab_size
    batch = {k: v.to(device) for k, v in make_inputs(batch_size, config["image_size"], vocab).items()}
    bf16 = uses_bf16(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    # what `--mixed_precision bf16` does to the prepared model's forward (its own autocast instance)
    model.forward = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)(model.forward)
    # the step of `s4eca-train`, gradients clipped at 1.0
    steps = time_training_steps(measured, batch, step_accelerator(device.type == "cpu"), config["warmup"],
                                config["repeats"], max_grad_norm=1.0, synchronize=lambda: synchronize(device))
    train_peak = peak_memory(device)
    profiled = profile_steps(steps["train_step"], device) if profile and device.type == "cuda" else None
    result = {
        "method": method, "batch_size": batch_size, "lora_rank": measured.lora_rank, "trainable": measured.trainable,
        "head": measured.head, "adapter": measured.adapter, "total": count_parameters(model),
        "step_s": steps["step_s"], "step_times": steps["step_times"], "peak_bytes": train_peak,
        "final_loss": steps["losses"][-1], "profile": profiled,
    }
    if time_evaluation:
        result["eval_batch_s"] = time_evaluation_batches(model, config, device, vocab, autocast)
    return result


def release_memory(device) -> None:
    """Give back what the last measured model held (its frame is gone once `measure` returns)."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_evaluation_batches(model, config: dict[str, Any], device, vocab: int, autocast) -> float:
    """Median seconds of a `no_grad` forward pass over an evaluation batch of 32."""
    import torch

    model.eval()
    eval_batch = {k: v.to(device) for k, v in make_inputs(EVAL_BATCH, config["image_size"], vocab).items()
                  if k != "labels"}
    with torch.no_grad(), autocast:
        eval_times, _ = timed(lambda: model(**eval_batch), config["warmup"], max(2, config["repeats"] // 2),
                              lambda: synchronize(device))
    return statistics.median(eval_times)


def published_split_sizes() -> dict[str, dict[str, int]]:
    from s4eca_peft.data.prepare import PUBLISHED_SPLIT_SIZES  # imports `datasets`: only once the GPU work is done

    return PUBLISHED_SPLIT_SIZES


def epoch_cost(result: dict[str, Any], dataset: str) -> tuple[float, float]:
    """Seconds of one epoch (train steps and validation batches) and of the 40-epoch run, for `dataset`."""
    sizes = published_split_sizes()[dataset]
    seconds = (math.ceil(sizes["train"] / TRAIN_BATCH) * result["step_s"]
               + math.ceil(sizes["val"] / EVAL_BATCH) * result["eval_batch_s"])
    return seconds, EPOCHS * seconds


def write_backbones(folder: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    """Random Swin-B (window 12) and BERT-base folders as `save_pretrained` writes them; the BERT-base one has the
    synthetic scenes' word-level tokenizer (the Hub's vocabulary cannot be downloaded here)."""
    from transformers import BertModel, SwinModel

    from s4eca_peft.training.base_model import fallback_tokenizer

    tokenizer = fallback_tokenizer()
    vision, text = backbone_configs(config["image_size"], config["tiny"], vocab_size=len(tokenizer),
                                    pad_token_id=tokenizer.pad_token_id)
    vision_dir, text_dir = folder / "swin-b", folder / "bert-base"
    SwinModel(vision).save_pretrained(vision_dir)
    BertModel(text).save_pretrained(text_dir)
    tokenizer.save_pretrained(text_dir)
    return vision_dir, text_dir


def run_end_to_end(config: dict[str, Any], mixed_precision: str) -> dict[str, Any]:
    """`s4eca-train` for a few hundred steps on synthetic scenes at the paper's size; its `train_results.json`."""
    with tempfile.TemporaryDirectory() as tmp:
        vision_dir, text_dir = write_backbones(Path(tmp), config)
        output = Path(tmp) / "run"
        steps = config["e2e_steps"]
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision",
            mixed_precision, str(REPO / "examples" / "train.py"), "--dataset", "synthetic",
            "--vision_model", str(vision_dir), "--text_model", str(text_dir), "--image_size",
            str(config["image_size"]), "--per_device_train_batch_size", str(TRAIN_BATCH),
            "--per_device_eval_batch_size", str(EVAL_BATCH), "--learning_rate", "1e-4", "--max_train_steps",
            str(steps), "--train_samples_per_epoch", str(steps * TRAIN_BATCH), "--num_val_samples", "64",
            "--num_test_samples", "32", "--dataloader_num_workers", str(config["e2e_workers"]),
            "--output_dir", str(output),
        ]
        started = time.time()
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"s4eca-train failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-4000:]}")
        stats = json.loads((output / "train_results.json").read_text())
        stats["eval_results"] = json.loads((output / "eval_results.json").read_text())
        stats["process_wall_s"] = time.time() - started
        return stats


def gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f} GiB"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def scaling_lines(scaling: list[dict[str, Any]]) -> list[str]:
    if not scaling:
        return []
    rows = []
    for batch_size in sorted({r["batch_size"] for r in scaling}):
        at = {r["method"]: r for r in scaling if r["batch_size"] == batch_size}
        full = at["full"]
        rows += [[str(batch_size), METHOD_LABELS[m], gib(r["peak_bytes"]),
                  f"{r['peak_bytes'] / full['peak_bytes']:.2f}x" if r["peak_bytes"] else "n/a",
                  f"{1000 * r['step_s']:.0f} ms", f"{r['step_s'] / full['step_s']:.2f}x",
                  f"{batch_size / r['step_s']:.0f}"] for m, r in at.items()]
    return ["", "Larger batches (same setup, training steps only):", "",
            markdown_table(["batch", "method", "peak GPU memory", "vs full", "train step", "vs full", "samples/s"],
                           rows)]


def profile_lines(results: list[dict[str, Any]]) -> list[str]:
    profiled = [r for r in results if r.get("profile")]
    if not profiled:
        return []
    lines = ["", "Where a batch-8 step goes (`--profile`, torch's profiler over 3 steps):", ""]
    for r in profiled:
        top = ", ".join(f"`{name}` {ms:.1f} ms" for name, ms in r["profile"]["top_operators_ms_per_step"][:4])
        lines.append(f"- {METHOD_LABELS[r['method']]}: GPU busy {100 * r['profile']['gpu_busy']:.0f} % of the wall "
                     f"time, {r['profile']['kernels_per_step']:.0f} kernels per step; most GPU time: {top}.")
    return lines


def report(output: dict[str, Any], command: str) -> str:
    results, end_to_end, config = output["results"], output["end_to_end"], output["config"]
    machine = output["machine"]
    full = next(r for r in results if r["method"] == "full")
    rows = []
    for r in results:
        rrsisd_epoch, rrsisd_run = epoch_cost(r, "rrsisd")
        refsegrs_epoch, refsegrs_run = epoch_cost(r, "refsegrs")
        memory_ratio = (f"{r['peak_bytes'] / full['peak_bytes']:.2f}x" if r["peak_bytes"] and full["peak_bytes"]
                        else "n/a")
        rows.append([
            METHOD_LABELS[r["method"]] + (f" (r={r['lora_rank']})" if r["lora_rank"] else ""),
            format_count(r["trainable"]), gib(r["peak_bytes"]), memory_ratio,
            f"{1000 * r['step_s']:.0f} ms", f"{r['step_s'] / full['step_s']:.2f}x",
            f"{1000 * r['eval_batch_s']:.0f} ms",
            f"{minutes(rrsisd_epoch)} / {minutes(rrsisd_run)}", f"{minutes(refsegrs_epoch)} / {minutes(refsegrs_run)}",
        ])
    table = markdown_table(
        ["method", "trainable", "peak GPU memory", "vs full", "train step", "vs full", "eval batch (32)",
         "RRSIS-D epoch / 40 epochs", "RefSegRS epoch / 40 epochs"], rows)
    sizes = published_split_sizes()
    lines = [
        "## Expected GPU cost",
        "",
        f"Command: `{command}`. Machine: {machine_line(machine)}.",
        "",
        f"Swin-B (window {window_for(config['image_size'])}) + BERT-base from configs, {config['image_size']}x"
        f"{config['image_size']}, batch {TRAIN_BATCH}, 20 tokens, {output.get('precision', 'bf16 autocast')}, AdamW with clipping; medians of "
        f"{config['repeats']} steps after {config['warmup']} warm-up. Peak memory is what torch allocated over the "
        "training steps (weights, gradients, optimizer state, activations). An epoch is "
        f"{math.ceil(sizes['rrsisd']['train'] / TRAIN_BATCH)} steps + {math.ceil(sizes['rrsisd']['val'] / EVAL_BATCH)} "
        f"validation batches on RRSIS-D ({sizes['rrsisd']['train']:,} / {sizes['rrsisd']['val']:,} samples) and "
        f"{math.ceil(sizes['refsegrs']['train'] / TRAIN_BATCH)} + {math.ceil(sizes['refsegrs']['val'] / EVAL_BATCH)}"
        f" on RefSegRS ({sizes['refsegrs']['train']:,} / {sizes['refsegrs']['val']:,}); data loading is not "
        "included in this table (see the end-to-end line below).",
        "",
        table,
    ]
    if end_to_end is not None:
        per_sample = 1 / end_to_end["train_samples_per_second"]
        rrsisd_epoch = sizes["rrsisd"]["train"] * per_sample
        lines += [
            "",
            f"End to end, `s4eca-train` itself (`--end-to-end`: {end_to_end['train_steps']} steps of batch "
            f"{TRAIN_BATCH} on synthetic {config['image_size']} px scenes, {config['e2e_workers']} data workers, "
            f"mixed precision {end_to_end['mixed_precision']}): **{end_to_end['train_samples_per_second']:.1f} "
            f"samples/s** with data loading (the first steps' warm-up included), peak GPU memory "
            f"**{end_to_end.get('peak_gpu_memory_gib', 'n/a')} GiB** (validation at batch {EVAL_BATCH} included), "
            f"so about {minutes(rrsisd_epoch)} of training per RRSIS-D epoch before validation.",
        ]
    lines += profile_lines(results) + scaling_lines(output.get("scaling", []))
    return "\n".join(lines)


def run_measurements(args: argparse.Namespace, config: dict[str, Any], device) -> dict[str, Any]:
    """Every method's steps, then the end-to-end run; the raw figures are written to ``--json`` as they come, so
    that a failure later keeps what was measured."""
    output: dict[str, Any] = {"machine": machine_info(1, str(device)), "smoke": args.smoke, "config": config,
                              "results": [], "end_to_end": None,
                              "precision": "bf16 autocast" if uses_bf16(device) else "float32 (no autocast on CPU)"}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(output, indent=2))

    methods = ["s4eca", *[m for m in args.methods if m != "s4eca"]]  # LoRA's rank follows S4ECA's budget
    if "full" not in methods:
        methods.append("full")  # the reference of the ratios
    budget = None
    for method in methods:
        result = measure(method, config, device, budget, profile=args.profile and method in ("s4eca", "full"))
        release_memory(device)
        if method == "s4eca":
            budget = result["adapter"]
        print(f"{method}: step {1000 * result['step_s']:.0f} ms, eval batch {1000 * result['eval_batch_s']:.0f} ms, "
              f"peak {gib(result['peak_bytes'])}", flush=True)
        output["results"].append(result)
        save()
    output["scaling"] = []
    for batch_size in args.scaling_batch_sizes:
        for method in SCALING_METHODS:
            result = measure(method, config, device, budget, batch_size=batch_size, time_evaluation=False)
            release_memory(device)
            print(f"{method} at batch {batch_size}: step {1000 * result['step_s']:.0f} ms, "
                  f"peak {gib(result['peak_bytes'])}", flush=True)
            output["scaling"].append(result)
            save()
    if args.end_to_end:
        output["end_to_end"] = run_end_to_end(config, "bf16" if uses_bf16(device) else "no")
        print(f"end to end: {json.dumps({k: v for k, v in output['end_to_end'].items() if k != 'eval_results'})}",
              flush=True)
        save()
    return output


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Tiny models at 64 px, 2 steps (for tests).")
    parser.add_argument("--end-to-end", action="store_true", help="Also time `s4eca-train` itself.")
    parser.add_argument("--methods", nargs="+", default=METHODS_MEASURED, choices=METHODS_MEASURED)
    parser.add_argument("--scaling-batch-sizes", type=int, nargs="*", default=[],
                        help=f"Also train {SCALING_METHODS} at these batch sizes (step time and memory only).")
    parser.add_argument("--profile", action="store_true",
                        help="Profile 3 steps of S4ECA and full fine-tuning: GPU busy share, kernels per step.")
    parser.add_argument("--docs", default=None, help=f"Markdown page for the section (default {DOCS_PAGE}).")
    parser.add_argument("--json", default=None, help="Also write the raw figures to this JSON file.")
    parser.add_argument("--from-json", default=None,
                        help="Write the section from raw figures saved by an earlier run's --json (no measuring).")
    args = parser.parse_args(argv)

    if args.from_json:
        output = json.loads(Path(args.from_json).read_text())
        args.smoke = output["smoke"]
    else:
        import torch
        import transformers

        import s4eca_peft  # noqa: F401  (registers S4ECA with peft)

        transformers.logging.set_verbosity_error()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type != "cuda" and not args.smoke:
            raise SystemExit("gpu_epoch_cost.py measures a GPU and none is visible; use --smoke to try it on CPU.")
        output = run_measurements(args, MODES["smoke" if args.smoke else "full"], device)
        output["command"] = " ".join(
            ["python -m benchmarks.gpu_epoch_cost"] + (["--smoke"] if args.smoke else [])
            + (["--end-to-end"] if args.end_to_end else []) + (["--profile"] if args.profile else [])
            + (["--scaling-batch-sizes", *map(str, args.scaling_batch_sizes)] if args.scaling_batch_sizes else []))
        if args.json:
            Path(args.json).write_text(json.dumps(output, indent=2))
    section = report(output, output["command"])
    print(section)
    docs = args.docs if args.docs else (None if args.smoke else str(DOCS_PAGE))
    if docs:
        write_section(docs, SECTION, section)
    return output


if __name__ == "__main__":
    main()
