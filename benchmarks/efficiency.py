"""Training and inference cost of S4ECA against full fine-tuning, LoRA at the same budget and a head-only baseline.

Swin-B (embed_dim 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32]) + BERT-base, built offline from their configs
(random weights: costs do not depend on the values), batch 2, 20 tokens. For each method and image size:

* trainable parameters and their share of the model;
* bytes written by `save_pretrained` (adapters + head; the whole model for full fine-tuning; the head's
  safetensors file for head-only), against the full checkpoint;
* peak memory of training: each method runs in its own fresh subprocess; once the model and optimizer are built the
  process's peak RSS is reset (``/proc/self/clear_refs``), and after the training steps it is read with
  `resource.getrusage(RUSAGE_SELF).ru_maxrss`. It includes the Python and torch runtime and the model's weights;
  the part above the RSS of the built model (gradients, optimizer state, activations) is shown separately;
* time of one training step (forward + backward + AdamW step), median of the timed steps after a warm-up step;
* inference latency (batch 1, `no_grad`, eval mode), median of the timed calls after a warm-up call.

S4ECA with gradient checkpointing of the encoder blocks is measured as an extra row. Ratios are against full
fine-tuning measured in the same run. Swin needs the last stage's map (size / 32) to be at least one window: the
window is 12 (as in the paper) where that holds, else size / 32 (7 at 224, as in Swin-B 224).

    python -m benchmarks.efficiency          # reduced default (--quick): 224x224, 3 steps, 10 calls (~2 min)
    python -m benchmarks.efficiency --full   # 224x224 and 480x480 (the paper's size), 2 rounds of 3 steps, 5 calls
    python -m benchmarks.efficiency --smoke --docs /tmp/b.md --plot /tmp/b.png   # tiny models, seconds

The table goes to the ``efficiency`` (``efficiency-full``) section of docs/benchmarks.md and the plot to
docs/images/benchmark_efficiency.png (benchmark_efficiency_full.png); ``--docs``/``--plot`` write elsewhere, and
``--smoke`` writes neither unless they are given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DOCS_PAGE,
    IMAGES_DIR,
    METHOD_LABELS,
    METHODS,
    command_line,
    count_parameters,
    format_bytes,
    format_count,
    load_average,
    machine_info,
    machine_line,
    markdown_table,
    module_process,
    saved_size_bytes,
    window_for,
    write_section,
)
from benchmarks.harness import (
    BATCH_SIZE,
    TEXT_LENGTH,
    build_measured,
    current_rss_bytes,
    make_inputs,
    peak_rss_bytes,
    reset_peak_rss,
    time_training_steps,
    timed,
)

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"image_sizes": [64], "rounds": 1, "warmup": 1, "repeats": 2, "latency_repeats": 2, "tiny": True},
    "quick": {"image_sizes": [224], "rounds": 1, "warmup": 1, "repeats": 3, "latency_repeats": 10, "tiny": False},
    "full": {"image_sizes": [224, 480], "rounds": 2, "warmup": 1, "repeats": 3, "latency_repeats": 5, "tiny": False},
}
METHODS_MEASURED = [*METHODS, "s4eca_gc"]
"""The four compared methods, and S4ECA with gradient checkpointing (`s4eca-train --gradient_checkpointing`) as an
extra row: the same adapters, encoder blocks recomputed in backward instead of keeping their activations."""
AIM = {"peak_rss": 0.6, "step_s": 0.8}
"""The package's aim for S4ECA against full fine-tuning: peak training memory <= 0.6x, step time <= 0.8x."""


def section_name(mode: str) -> str:
    """Marked section of docs/benchmarks.md: ``efficiency`` (reduced default and smoke) or ``efficiency-full``."""
    return "efficiency-full" if mode == "full" else "efficiency"


def plot_name(mode: str) -> str:
    return "benchmark_efficiency_full.png" if mode == "full" else "benchmark_efficiency.png"


# ---------------------------------------------------------------------------------------------- worker side


def measure(method: str, args: argparse.Namespace, lora_budget: int | None) -> dict[str, Any]:
    """One method in this process: build, train `warmup + repeats` steps, time inference, save."""
    import torch
    from accelerate import Accelerator

    measured = build_measured(method, args.image_size, args.tiny, lora_budget)
    model = measured.model
    inputs = make_inputs(BATCH_SIZE, args.image_size, measured.base.config.text_config.vocab_size)
    peak_build = peak_rss_bytes()
    rss_built = current_rss_bytes()
    peak_was_reset = reset_peak_rss()
    # the step of `s4eca-train`, without gradient clipping
    steps = time_training_steps(measured, inputs, Accelerator(cpu=True), args.warmup, args.repeats, max_grad_norm=0.0)
    peak_train = peak_rss_bytes()
    del steps["optimizer"], steps["train_step"]
    model.zero_grad(set_to_none=True)  # inference in every process without training state

    model.eval()
    single = {k: v[:1] for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        latencies, _ = timed(lambda: model(**single), args.warmup, args.latency_repeats)

    with tempfile.TemporaryDirectory() as tmp:
        saved = saved_size_bytes(model, method, Path(tmp) / method)
    return {
        "method": method,
        "image_size": args.image_size,
        "window_size": window_for(args.image_size),
        "lora_rank": measured.lora_rank,
        "trainable": measured.trainable,
        "total": count_parameters(model),
        "head": measured.head,
        "adapter": measured.adapter,
        "saved_bytes": saved,
        "rss_built": rss_built,
        "peak_rss_build": peak_build,
        "peak_rss": peak_train,
        "peak_rss_reset": peak_was_reset,
        "step_s": steps["step_s"],
        "step_times": steps["step_times"],
        "latency_s": statistics.median(latencies),
        "latencies": latencies,
        "losses": steps["losses"],
        "threads": torch.get_num_threads(),
    }


def worker_main(args: argparse.Namespace) -> None:
    import torch
    import transformers

    import s4eca_peft  # noqa: F401  (registers S4ECA with peft)

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, budget = [], args.lora_budget
    for method in args.methods:
        result = measure(method, args, budget)
        if method == "s4eca":
            budget = result["adapter"]  # a later LoRA run in this process matches it
        results.append(result)
    Path(args.result_file).write_text(json.dumps(results))


# ---------------------------------------------------------------------------------------------- driver side


def run_worker(methods: list[str], image_size: int, config: dict[str, Any], args: argparse.Namespace,
               lora_budget: int | None) -> list[dict[str, Any]]:
    prefix, env = module_process("efficiency")
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [
            *prefix, "--worker", "--methods", *methods,
            "--image-size", str(image_size), "--warmup", str(config["warmup"]), "--repeats", str(config["repeats"]),
            "--latency-repeats", str(config["latency_repeats"]),
            "--result-file", str(result_file),
        ]
        if config["tiny"]:
            command.append("--tiny")
        if lora_budget is not None:
            command += ["--lora-budget", str(lora_budget)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        if completed.returncode != 0:
            raise RuntimeError(f"worker {methods} at {image_size} px failed:\n{completed.stderr[-4000:]}")
        return json.loads(result_file.read_text())


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else "n/a"


def results_table(results: list[dict[str, Any]]) -> str:
    header = ["size", "method", "trainable", "share", "saved file", "vs full ckpt", "peak RSS", "vs full",
              "RSS above built model", "vs full", "train step", "vs full", "inference (batch 1)", "vs full"]
    rows = []
    for size in sorted({r["image_size"] for r in results}):
        at_size = [r for r in results if r["image_size"] == size]
        full = next(r for r in at_size if r["method"] == "full")
        full_extra = full["peak_rss"] - full["rss_built"]
        for r in at_size:
            label = METHOD_LABELS[r["method"]] + (f", r={r['lora_rank']}" if r["lora_rank"] else "")
            extra = r["peak_rss"] - r["rss_built"]
            rows.append([
                f"{size} (window {r['window_size']})", label, format_count(r["trainable"]),
                f"{100 * r['trainable'] / r['total']:.2f} %", format_bytes(r["saved_bytes"]),
                ratio(r["saved_bytes"], full["saved_bytes"]), format_bytes(r["peak_rss"]),
                ratio(r["peak_rss"], full["peak_rss"]), format_bytes(extra), ratio(extra, full_extra),
                f"{r['step_s']:.2f} s", ratio(r["step_s"], full["step_s"]), f"{1000 * r['latency_s']:.0f} ms",
                ratio(r["latency_s"], full["latency_s"]),
            ])
    return markdown_table(header, rows)


def verdict(value: float, aim: float) -> str:
    return "holds" if value <= aim else "does not hold"


def aim_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for size in sorted({r["image_size"] for r in results}):
        at_size = {r["method"]: r for r in results if r["image_size"] == size}
        full = at_size["full"]
        memory = at_size["s4eca"]["peak_rss"] / full["peak_rss"]
        step = at_size["s4eca"]["step_s"] / full["step_s"]
        line = (
            f"- {size} px: S4ECA's peak training memory is {memory:.2f}x that of full fine-tuning (aim <= "
            f"{AIM['peak_rss']}x: {verdict(memory, AIM['peak_rss'])}), its step time {step:.2f}x (aim <= "
            f"{AIM['step_s']}x: {verdict(step, AIM['step_s'])})."
        )
        if "s4eca_gc" in at_size:
            gc = at_size["s4eca_gc"]
            line += (f" With gradient checkpointing: {gc['peak_rss'] / full['peak_rss']:.2f}x the memory and "
                     f"{gc['step_s'] / full['step_s']:.2f}x the step time.")
        lines.append(line)
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Per image size: each method's cost relative to full fine-tuning (log scale), the package's aims marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    sizes = sorted({r["image_size"] for r in results})
    metrics = [
        ("trainable", "trainable\nparameters"), ("saved_bytes", "saved\nfile"), ("peak_rss", "peak RSS\n(training)"),
        ("step_s", "training\nstep"), ("latency_s", "inference\n(batch 1)"),
    ]
    methods = [m for m in METHODS_MEASURED if any(r["method"] == m for r in results)]
    colours = {"s4eca": "#d62728", "full": "#7f7f7f", "lora": "#1f77b4", "head": "#2ca02c", "s4eca_gc": "#ff9896"}
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.6), squeeze=False)
    width = 0.8 / len(methods)
    for ax, size in zip(axes[0], sizes):
        at_size = {r["method"]: r for r in results if r["image_size"] == size}
        full = at_size["full"]
        for i, method in enumerate(methods):
            values = [at_size[method][key] / full[key] for key, _ in metrics]
            positions = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(metrics))]
            bars = ax.bar(positions, values, width, label=METHOD_LABELS[method], color=colours.get(method))
            for bar, value in zip(bars, values):
                ax.text(bar.get_x() + bar.get_width() / 2, value * 1.1, f"{value:.2f}" if value >= 0.1 else
                        f"{value:.3f}", ha="center", va="bottom", fontsize=6, rotation=90)
        for key, aim in AIM.items():  # the package's aims for S4ECA
            j = [k for k, _ in metrics].index(key)
            ax.hlines(aim, j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=0.8)
            ax.text(j + 0.45, aim, f" aim {aim}x", fontsize=6, va="center")
        ax.axhline(1.0, color="black", linewidth=0.6)
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 8)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels([label for _, label in metrics], fontsize=8)
        ax.set_ylabel("relative to full fine-tuning (log scale)")
        ax.set_title(f"Swin-B + BERT-base, {size}x{size}, batch {BATCH_SIZE} (CPU, {full['threads']} thread(s))",
                     fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's measurements from several rounds: medians over all timed steps and calls, the highest peak."""
    merged = dict(runs[0])
    merged["step_times"] = [t for run in runs for t in run["step_times"]]
    merged["latencies"] = [t for run in runs for t in run["latencies"]]
    merged["step_s"] = statistics.median(merged["step_times"])
    merged["latency_s"] = statistics.median(merged["latencies"])
    merged["peak_rss"] = max(run["peak_rss"] for run in runs)
    merged["rss_built"] = min(run["rss_built"] for run in runs)
    merged["rounds"] = len(runs)
    return merged


def driver_main(args: argparse.Namespace) -> list[dict[str, Any]]:
    mode = "smoke" if args.smoke else "full" if args.full else "quick"
    config = dict(MODES[mode])
    if args.image_sizes:
        config["image_sizes"] = args.image_sizes
    if args.repeats:
        config["repeats"] = args.repeats
    if args.rounds:
        config["rounds"] = args.rounds
    started = time.time()
    info = machine_info(args.threads)
    load_before = load_average()
    results: list[dict[str, Any]] = []
    for size in config["image_sizes"]:
        if mode == "smoke":  # one process for all methods: seconds instead of one runtime start per method
            results += run_worker(METHODS_MEASURED, size, config, args, None)
            continue
        rounds: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS_MEASURED}
        budget = None
        for round_index in range(config["rounds"]):
            # s4eca first in the first round (LoRA's rank is matched to its adapter budget), then alternate the order
            # so that a drift in the machine's load does not always hit the same methods
            order = METHODS_MEASURED if round_index % 2 == 0 else METHODS_MEASURED[::-1]
            for method in order:
                (result,) = run_worker([method], size, config, args, budget)
                if method == "s4eca":
                    budget = result["adapter"]
                rounds[method].append(result)
                print(f"{size} px {method} (round {round_index + 1}): step {result['step_s']:.2f} s, peak RSS "
                      f"{format_bytes(result['peak_rss'])}, inference {1000 * result['latency_s']:.0f} ms", flush=True)
        results += [merge_rounds(rounds[method]) for method in METHODS_MEASURED]
    wall = time.time() - started
    command = command_line("efficiency", *{"quick": [], "full": ["--full"], "smoke": ["--smoke"]}[mode])
    table = results_table(results)
    s4eca = next(r for r in results if r["method"] == "s4eca")
    lora = next(r for r in results if r["method"] == "lora")
    full = next(r for r in results if r["method"] == "full")
    backbones = full["total"] - full["head"]
    section = "\n".join([
        f"## Efficiency ({mode} mode)",
        "",
        f"Command: `{command}` ({wall / 60:.1f} min). Machine: {machine_line(info)}. The machine was shared with "
        f"other jobs (load average {load_before} before, {load_average()} after, over 1 / 5 / 15 min), so "
        "absolute times are noisy; compare the ratios, which come from the same run. Times are medians of "
        f"{config['repeats']} training steps and {config['latency_repeats']} inference calls per process, each "
        f"after {config['warmup']} warm-up"
        + (f", over {config['rounds']} rounds of one process per method, in alternating order." if config["rounds"] > 1
           else "."),
        "",
        f"Swin-B + BERT-base from configs (random weights), batch {BATCH_SIZE}, {TEXT_LENGTH} tokens. S4ECA "
        f"adapters: {format_count(s4eca['adapter'])} parameters ({100 * s4eca['adapter'] / backbones:.2f} % of the "
        f"two backbones' {format_count(backbones)}; the paper: 2.4 %); LoRA on the query/key/value projections of "
        f"both encoders at rank {lora['lora_rank']} has {format_count(lora['adapter'])} (the closest to that "
        "budget); both also train the same head. Each method runs in a fresh subprocess. Peak RSS is `ru_maxrss` of "
        "that subprocess over the training steps: the peak is reset (`/proc/self/clear_refs`) once the model and "
        "optimizer are built, so it is the peak of training, weights and runtime included"
        + ("" if all(r["peak_rss_reset"] for r in results) else " (the reset was refused here: process peaks)")
        + "; \"RSS above built model\" subtracts the RSS just before the first step (gradients, optimizer state, "
        "activations). Saved file: what `save_pretrained` writes (the whole model for full fine-tuning; the head's "
        "safetensors for head-only). Inference runs the PEFT models unmerged (a merged LoRA costs what the base "
        "model costs).",
        "",
        table,
        "",
        "The package's aim (S4ECA against full fine-tuning):",
        "",
        *aim_lines(results),
        "",
        f"![efficiency](images/{Path(args.plot).name if args.plot else plot_name(mode)})",
    ])
    print(table)
    print("\n".join(aim_lines(results)))
    print(f"wall time {wall:.0f} s")
    docs = args.docs if args.docs else (None if mode == "smoke" else str(DOCS_PAGE))
    plot_path = args.plot if args.plot else (None if mode == "smoke" else str(IMAGES_DIR / plot_name(mode)))
    if docs:
        write_section(docs, section_name(mode), section)
    if plot_path:
        plot(results, Path(plot_path))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "mode": mode, "wall_s": wall, "results": results},
                                              indent=2))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="Reduced default: 224x224, 3 timed steps, 10 calls.")
    modes.add_argument("--full", action="store_true", help="224x224 and 480x480, 2 rounds of 3 steps and 5 calls.")
    modes.add_argument("--smoke", action="store_true", help="Tiny models, 2 steps, one process (for tests).")
    parser.add_argument("--image-sizes", type=int, nargs="+", default=None, help="Override the mode's sizes.")
    parser.add_argument("--repeats", type=int, default=None, help="Override the mode's timed repeats.")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Override the mode's rounds (one process per method and round, alternating order).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per measured process (default 1: on a shared machine, several threads "
                             "stall whenever another job holds a core, and timings lose all meaning).")
    parser.add_argument("--docs", default=None, help=f"Markdown page to write the section to (default {DOCS_PAGE}).")
    parser.add_argument("--plot", default=None, help="PNG to write (default docs/images/benchmark_efficiency.png).")
    parser.add_argument("--json", default=None, help="Also write the raw measurements to this JSON file.")
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--methods", nargs="+", default=METHODS_MEASURED, help=argparse.SUPPRESS)
    worker.add_argument("--image-size", type=int, default=224, help=argparse.SUPPRESS)
    worker.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    worker.add_argument("--latency-repeats", type=int, default=10, help=argparse.SUPPRESS)
    worker.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--lora-budget", type=int, default=None, help=argparse.SUPPRESS)
    worker.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]] | None:
    args = build_parser().parse_args(argv)
    if args.worker:
        args.repeats = args.repeats or 3
        worker_main(args)
        return None
    return driver_main(args)


if __name__ == "__main__":
    main()
