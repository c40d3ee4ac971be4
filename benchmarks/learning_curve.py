"""Learning curves on the synthetic scenes: val mIoU and language use against training steps for S4ECA (and its
variants: pixel-to-proxy attention, the head's sentence x place kernel), LoRA at the same parameter budget (at three
learning rates) and head-only (with and without the place kernel), overall and per family of expressions.

Each (method, seed) is one training run in a process of its own (`synthetic_runs.train_and_evaluate`, the accuracy
benchmark's protocol), scored on the fixed val scenes every ``--eval_every`` steps up to ``--max_steps``, or until
val mIoU has not improved for ``--patience`` evaluations. Every evaluation is stored at once in
``benchmarks/results/learning_curve.json``, and the run's state in ``--runs_dir`` (trainable weights, optimizer,
scheduler); a rerun skips the finished runs and continues the others from their last evaluation.

*Language use*: val mIoU minus val mIoU with each image's vision adapters given another image's proxies (S4ECA only;
LoRA and head-only have no proxies, shown as ``-``). Per-family scores are shown where the evaluation reports them.

    python -m benchmarks.learning_curve                       # every method x 2 seeds, every 192 steps up to 3,000
    python -m benchmarks.learning_curve --device cuda --seeds 0 1 2
    python -m benchmarks.learning_curve --render              # the figure and the table from the stored runs
    python -m benchmarks.learning_curve --smoke --results lc.json --docs lc.md --plot lc.png   # tiny, for tests
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import DOCS_PAGE, IMAGES_DIR, METHOD_LABELS, command_line, markdown_table, write_section
from benchmarks.resume import saved_step
from benchmarks.store import RESULTS_DIR, ResultsStore
from benchmarks.synthetic_runs import PROTOCOL
from s4eca_peft.data.synthetic import RELATIONAL_FAMILIES

SECTION = "learning-curve"
RESULTS = RESULTS_DIR / "learning_curve.json"
PLOT = "benchmark_learning_curve.png"
BOTH_KERNELS = {"head_place_kernel": True, "head_rank_kernel": True}
"""The head `s4eca-train` builds: the sentence x place and sentence x rank kernels."""
PROTOCOL_RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "s4eca_place_kernel": ("s4eca", {"head_place_kernel": True}), "head_place_kernel": ("head", {"head_place_kernel": True}),
    "lora_lr_5e-4": ("lora", {"learning_rate": 5e-4}), "lora_lr_2e-4": ("lora", {"learning_rate": 2e-4}),
    "lora_place_kernel": ("lora", {"learning_rate": 5e-4, "head_place_kernel": True}),
    "s4eca_sentence_dropout": ("s4eca", {"head_place_kernel": True, "head_sentence_dropout": 0.5}),
    "s4eca_rank_kernel": ("s4eca", BOTH_KERNELS),
    "lora_rank_kernel": ("lora", {**BOTH_KERNELS, "learning_rate": 5e-4}),
    "s4eca_rank_kernel_lr_4e-3": ("s4eca", {**BOTH_KERNELS, "learning_rate": 4e-3}),
    "s4eca_rank_kernel_lr_1e-3": ("s4eca", {**BOTH_KERNELS, "learning_rate": 1e-3}),
    "s4eca_rank_kernel_sentence_dropout_0.25": ("s4eca", {**BOTH_KERNELS, "head_sentence_dropout": 0.25}),
    "s4eca_category_map": ("s4eca", {**BOTH_KERNELS, "head_category_map": True, "learning_rate": 1e-3}),
    "lora_category_map": ("lora", {**BOTH_KERNELS, "head_category_map": True, "learning_rate": 5e-4}),
    "head_only_category_map": ("head", {**BOTH_KERNELS, "head_category_map": True}),
    "s4eca_rank_words": ("s4eca", {**BOTH_KERNELS, "head_category_map": True, "head_rank_words": True,
                                   "learning_rate": 1e-3}),
    **{f"s4eca_category_map_sentence_dropout_{rate}": (
        "s4eca", {**BOTH_KERNELS, "head_category_map": True, "head_sentence_dropout": rate, "learning_rate": 1e-3})
       for rate in common.SENTENCE_DROPOUT_RATES},
    "s4eca_rank_product": ("s4eca", {**BOTH_KERNELS, "head_category_map": True, "head_rank_product": True,
                                     "head_sentence_dropout": 0.1, "learning_rate": 1e-3}),
    "lora_rank_product": ("lora", {**BOTH_KERNELS, "head_category_map": True, "head_rank_product": True,
                                   "learning_rate": 5e-4}),
    "s4eca_rank_product_no_dropout": ("s4eca", {**BOTH_KERNELS, "head_category_map": True, "head_rank_product": True,
                                                "learning_rate": 1e-3}),
}
"""Methods that are another method's run under a changed protocol (the head's sentence x place kernel, a learning
rate, sentence dropout in the head, the head's rank kernel, the rank kernel counting in a category map): that run and
the change. LoRA with the kernel runs at the learning rate its runs without the kernel chose on val; S4ECA's own rate
(2e-3, chosen on 192-step runs) is tried again at 3,000 steps; the category map runs at the rate val chose there, and
so do the rank kernel reading the words through attention pools (`s4eca_rank_words`) and sentence dropout with the
category map. The rank kernel's side x count products run with each method's best configuration so far (S4ECA with
sentence dropout 0.1, as the reference adapter; LoRA at 5e-4), and S4ECA's also without the dropout, as
`s4eca-train` builds its head."""
METHODS = ["s4eca", "lora", "head", "s4eca_proxy_attention", *PROTOCOL_RUNS]
AIM_METHODS = {
    "s4eca_rank_product": "S4ECA, side x count products, sentence dropout 0.1 (the reference adapter's config)",
    "s4eca_rank_product_no_dropout": "S4ECA, side x count products, no sentence dropout (s4eca-train's head)",
    "lora_rank_product": "LoRA, side x count products",
    "lora_category_map": "LoRA, category map without the products",
    "head_only_category_map": "head only, category map",
}
"""The runs the aims compare (docs/benchmarks.md), each named for its own picture (`plot_aims`)."""
AIM_PANELS = ("overall", "relational families", "language use (S4ECA)")
"""The panels of the aims' picture: val mIoU, its mean over the relational families, language use."""
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"image_size": 64, "batch_size": 2, "num_eval_samples": 4, "max_steps": 4, "eval_every": 2},
    "default": {"image_size": 128, "batch_size": 16, "num_eval_samples": 256, "max_steps": 3000, "eval_every": 192},
}


def run_key(record: dict[str, Any]) -> tuple[str, int]:
    return record["method"], record["seed"]


def val_point(step: int, scores: dict[str, Any]) -> dict[str, Any]:
    """One point of a curve: val metrics, per-family metrics and language use where they were measured."""
    val = scores["val"]
    point = {"step": step, "mIoU": val["mIoU"], "oIoU": val["oIoU"],
             "per_family": {family: metrics["mIoU"] for family, metrics in val.get("per_family", {}).items()}}
    mismatched = scores.get("val_mismatched_proxies")
    point["mIoU_drop"] = val["mIoU"] - mismatched["mIoU"] if mismatched else None
    point["per_family_mIoU_drop"] = {
        family: metrics["mIoU"] - mismatched["per_family"][family]["mIoU"]
        for family, metrics in val.get("per_family", {}).items()
        if mismatched and family in mismatched.get("per_family", {})
    }
    return point


# ---------------------------------------------------------------------------------------------- one run


def worker(args: argparse.Namespace) -> None:
    """Train one (method, seed), storing the record after every evaluation; stop after ``patience`` evaluations
    without a better val mIoU."""
    from benchmarks.synthetic_runs import train_and_evaluate

    store = ResultsStore(args.results, run_key)
    config = MODES["smoke" if args.smoke else "default"]
    checkpoint = Path(args.runs_dir) / f"{args.method}-seed{args.seed}"
    run, change = PROTOCOL_RUNS.get(args.method, (args.method, {}))
    protocol = {**PROTOCOL, **config, **change, "steps": args.max_steps or config["max_steps"],
                "eval_every": args.eval_every or config["eval_every"], "seed": args.seed, "threads": args.threads,
                "splits": ("val",), "language_use": True, "device": args.device, "checkpoint_dir": str(checkpoint)}
    record = {"method": args.method, "seed": args.seed, "done": False, "points": [],
              "protocol": {k: v for k, v in protocol.items() if k not in ("splits", "threads", "device",
                                                                          "checkpoint_dir")},
              "command": args.command, "device": args.device}
    resumed, stored = saved_step(checkpoint), store.find((args.method, args.seed))
    if resumed and stored:  # the points up to the saved state stand; later ones are measured again
        record["points"] = [p for p in stored["points"] if p["step"] <= resumed]
        print(f"{args.method} seed {args.seed}: continuing after step {resumed}", flush=True)
    elif resumed:  # a state whose points are not in this results file: start again
        shutil.rmtree(checkpoint)
    started = time.time()

    def on_evaluation(step: int, scores: dict[str, Any]) -> bool:
        if record["points"] and record["points"][-1]["step"] == step:
            return True  # the final evaluation of a run stopped early repeats its last point
        record["points"].append(val_point(step, scores))
        record["wall_s"] = time.time() - started
        store.put(record)
        point = record["points"][-1]
        drop = "-" if point["mIoU_drop"] is None else f"{100 * point['mIoU_drop']:+.2f}"
        print(f"{args.method} seed {args.seed} step {step}: val mIoU {100 * point['mIoU']:.2f}, language use {drop}",
              flush=True)
        best = max(range(len(record["points"])), key=lambda i: record["points"][i]["mIoU"])
        return len(record["points"]) - 1 - best >= args.patience

    result = train_and_evaluate(run, protocol, on_evaluation)
    record.update(done=True, trainable=result["trainable"], lora_rank=result["lora_rank"],
                  final_loss=result["final_loss"], wall_s=time.time() - started)
    store.put(record)
    shutil.rmtree(checkpoint, ignore_errors=True)  # a finished run is not continued


def launch(method: str, seed: int, args: argparse.Namespace, command: str) -> None:
    """One run in a process of its own; its output is shown as it comes."""
    prefix, env = common.module_process("learning_curve")
    words = [*prefix, "--worker", "--method", method, "--seed", str(seed), "--results", args.results,
             "--runs_dir", args.runs_dir,
             "--device", args.device, "--threads", str(args.threads), "--patience", str(args.patience),
             "--command", command]
    words += ["--smoke"] if args.smoke else []
    words += ["--max_steps", str(args.max_steps)] if args.max_steps else []
    words += ["--eval_every", str(args.eval_every)] if args.eval_every else []
    subprocess.run(words, env=env, check=True)


# ---------------------------------------------------------------------------------------------- report


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def final_points(records: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Each seed's best val point (the checkpoint a run would keep), over the finished runs of `method` when it has
    any: a run still early on its curve would pull the mean down."""
    runs = [r for r in records if r["method"] == method and r["points"]]
    finished = [r for r in runs if r.get("done")]
    return [max(r["points"], key=lambda p: p["mIoU"]) for r in finished or runs]


def over(points: list[dict[str, Any]], name: str, within: str | None = None) -> float | None:
    """Mean over seeds of a point's `name` (inside `within`); None unless every seed measured it."""
    values = [(p[within] if within else p).get(name) for p in points]
    return mean(values) if None not in values else None


def over_families(points: list[dict[str, Any]], within: str, names: list[str]) -> float | None:
    """Mean over seeds of the mean over the families `names` of ``point[within]``; None where not measured."""
    values = [mean([p[within][f] for f in names if f in p[within]]) for p in points]
    return mean(values) if names and None not in values else None


def families(records: list[dict[str, Any]]) -> list[str]:
    found = {family for r in records for p in r["points"] for family in p["per_family"]}
    return sorted(found, key=lambda f: (f in RELATIONAL_FAMILIES, f))


def category_only(image_size: int, num_samples: int) -> dict[str, Any]:
    """A val point for the mask of every object of the expression's category: what naming the category alone
    reaches on the same val scenes (their layouts drawn again from the val seed)."""
    import numpy as np
    import torch

    from s4eca_peft.data.loaders import SYNTHETIC_SPLIT_SEEDS
    from s4eca_peft.data.synthetic import generate_scene_with_layout, object_footprint
    from s4eca_peft.metrics import intersection_and_union, rrsis_metrics

    inters, unions, names = [], [], []
    for index in range(num_samples):
        scene = generate_scene_with_layout((SYNTHETIC_SPLIT_SEEDS["val"], index), image_size)
        guess = np.zeros_like(scene.mask)
        for obj in scene.objects:
            if obj.category == scene.category:
                box, shape = object_footprint(obj, image_size)
                guess[box] |= shape
        inter, union = intersection_and_union(torch.from_numpy(guess)[None], torch.from_numpy(scene.mask)[None])
        inters.append(int(inter))
        unions.append(int(union))
        names.append(scene.family)
    scores = rrsis_metrics(inters, unions, names)
    return val_point(0, {"val": scores})


def seed_range(values: list[float]) -> str:
    """Lowest to highest of the seeds' scores, in %; ``-`` for a single seed."""
    return f"{100 * min(values):.2f} to {100 * max(values):.2f}" if len(values) > 1 else "-"


def table(records: list[dict[str, Any]]) -> str:
    """One row per method: the best val point, mean over seeds; relational families averaged apart. A last row
    scores every object of the named category (`category_only`)."""
    shown = families(records)
    relational = [f for f in shown if f in RELATIONAL_FAMILIES]
    header = ["method", "seeds", "best step", "val mIoU", "seeds' range", "val oIoU", "language use", "relational mIoU",
              "relational language use", *(f"{f} mIoU" for f in shown)]
    rows = []
    for method in METHODS:
        points = final_points(records, method)
        if not points:
            continue
        rows.append([METHOD_LABELS[method], len(points), round(mean([p["step"] for p in points])),
                     percent(over(points, "mIoU")), seed_range([p["mIoU"] for p in points]),
                     percent(over(points, "oIoU")),
                     percent(over(points, "mIoU_drop"), signed=True),
                     percent(over_families(points, "per_family", relational)),
                     percent(over_families(points, "per_family_mIoU_drop", relational), signed=True),
                     *(percent(over(points, f, "per_family")) for f in shown)])
    protocol = records[0]["protocol"]
    floor = category_only(protocol["image_size"], protocol["num_eval_samples"])
    rows.append(["every object of the named category (no model)", "-", "-", percent(floor["mIoU"]), "-",
                 percent(floor["oIoU"]), "-", percent(over_families([floor], "per_family", relational)), "-",
                 *(percent(floor["per_family"].get(f)) for f in shown)])
    return markdown_table(header, rows)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    legend_inches = 0.2 * len(methods) + 0.2  # one line per method below both panels: the labels are too long for an axis
    fig = plt.figure(figsize=(12, 4.5 + legend_inches))
    left, right = fig.subplots(1, 2)
    colours = plt.get_cmap("tab20")
    for index, method in enumerate(methods):
        colour, style = colours(index % colours.N), ("-", "--", ":")[index // colours.N % 3]
        for number, r in enumerate(r for r in records if r["method"] == method):
            steps = [p["step"] for p in r["points"]]
            label = METHOD_LABELS[method] if number == 0 else None  # one legend line per method
            left.plot(steps, [100 * p["mIoU"] for p in r["points"]], color=colour, ls=style, marker=".",
                      label=label)
            drops = [(p["step"], 100 * p["mIoU_drop"]) for p in r["points"] if p["mIoU_drop"] is not None]
            if drops:
                right.plot(*zip(*drops), color=colour, ls=style, marker=".")
    left.set(xlabel="training steps", ylabel="val mIoU (%)", title="val mIoU, one line per seed")
    right.set(xlabel="training steps", ylabel="mIoU drop with mismatched proxies (%)", title="language use (S4ECA)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower left", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aims_plot_path(path: Path) -> Path:
    """Where the aims' picture goes beside the picture of every run."""
    return path.with_name(f"{path.stem}_aims{path.suffix}")


def aim_curves(records: list[dict[str, Any]]) -> dict[str, list[dict[str, list[tuple[int, float]]]]]:
    """For each method of `AIM_METHODS` stored, one entry per seed: the (step, %) points of each of `AIM_PANELS`
    (val mIoU, its mean over the relational families, language use), where measured."""
    relational = list(RELATIONAL_FAMILIES)
    values = (lambda p: p["mIoU"], lambda p: over_families([p], "per_family", relational), lambda p: p["mIoU_drop"])
    return {method: [{panel: [(p["step"], 100 * value(p)) for p in r["points"] if value(p) is not None]
                      for panel, value in zip(AIM_PANELS, values)}
                     for r in records if r["method"] == method]
            for method in AIM_METHODS if any(r["method"] == method for r in records)}


def plot_aims(records: list[dict[str, Any]], path: Path) -> bool:
    """`aim_curves` in three panels, one colour per method and one line per seed; False (nothing written) when none
    of `AIM_METHODS` is stored."""
    curves = aim_curves(records)
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2 + 0.22 * len(curves)))
    colours = plt.get_cmap("tab10")
    for index, (method, seeds) in enumerate(curves.items()):
        for number, seed in enumerate(seeds):
            for ax, panel in zip(axes, AIM_PANELS):
                if seed[panel]:
                    ax.plot(*zip(*seed[panel]), color=colours(index), marker=".",
                            label=AIM_METHODS[method] if number == 0 and ax is axes[0] else None)
    ylabels = ("val mIoU (%)", "val mIoU on " + ", ".join(RELATIONAL_FAMILIES) + " (%)",
               "mIoU drop with mismatched proxies (%)")
    for ax, panel, ylabel in zip(axes, AIM_PANELS, ylabels):
        ax.set(xlabel="training steps", ylabel=ylabel, title=panel)
        ax.grid(alpha=0.3)
    axes[2].axhline(10, color="grey", ls=":", lw=1)  # the aim: +10 points
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower left", fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.22 * len(curves) / fig.get_figheight() + 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def section(records: list[dict[str, Any]], plot_file: str) -> str:
    first = records[0]
    protocol, machine = first["protocol"], first.get("machine")
    commands = "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in records))
    unfinished = [f"{r['method']} seed {r['seed']}" for r in records if not r["done"]]
    return "\n".join([
        "## Learning curves (val)",
        "",
        f"Command: {commands}." + (f" Machine: {common.machine_line(machine)}." if machine else "")
        + f" Device: {first['device']}." + (f" Not finished: {', '.join(unfinished)}." if unfinished else ""),
        "",
        f"Each run: the accuracy protocol ({protocol['image_size']} px, batch {protocol['batch_size']}, AdamW lr "
        f"{PROTOCOL['learning_rate']:g} unless the row names another, with warm-up then cosine over "
        f"{protocol['steps']} steps), scored on "
        f"{protocol['num_eval_samples']} fixed synthetic **val** scenes every {protocol['eval_every']} steps; a run "
        "stops early when val mIoU has not improved for a few evaluations. Each row: the best val point of each "
        "finished seed (of each seed while none has finished), averaged. *Language use*: val mIoU minus val mIoU with each image's vision adapters given another image's "
        "proxies (S4ECA only). Relational families: " + ", ".join(RELATIONAL_FAMILIES) + ". `-`: not measured. "
        "Scores in %.",
        "",
        table(records),
        "",
        *(["The runs the aims compare, one line per seed (the grey line: the language-use aim, +10):", "",
           f"![learning curves of the runs the aims compare](images/{aims_plot_path(Path(plot_file)).name})", "",
           "Every run:", ""] if any(r["method"] in AIM_METHODS for r in records) else []),
        f"![learning curves](images/{plot_file})",
    ])


def render(args: argparse.Namespace) -> str | None:
    records = ResultsStore(args.results, run_key).records()
    if not records:
        print(f"{args.results}: no stored runs yet.")
        return None
    text = section(records, Path(args.plot).name if args.plot else PLOT)
    print(text)
    docs = args.docs if args.docs is not None else (None if args.smoke else str(DOCS_PAGE))
    plot_path = args.plot if args.plot is not None else (None if args.smoke else str(IMAGES_DIR / PLOT))
    if docs:
        write_section(docs, SECTION, text)
    if plot_path:
        plot(records, Path(plot_path))
        plot_aims(records, aims_plot_path(Path(plot_path)))
    return text


# ---------------------------------------------------------------------------------------------- driver


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Seeds per method (default 0 1; smoke 0).")
    parser.add_argument("--max_steps", type=int, default=None, help="Steps of a run (default 3000; smoke 4).")
    parser.add_argument("--eval_every", type=int, default=None, help="Steps between evaluations (default 192).")
    parser.add_argument("--patience", type=int, default=3,
                        help="Evaluations without a better val mIoU before a run stops.")
    parser.add_argument("--device", default="cpu", help="Where the runs train: cpu or cuda.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run process.")
    parser.add_argument("--smoke", action="store_true", help="Tiny runs (64 px, 4 steps) for tests.")
    parser.add_argument("--render", action="store_true", help="Only render the stored runs.")
    parser.add_argument("--results", default=None,
                        help=f"JSON file the runs accumulate in (default {RESULTS.relative_to(RESULTS.parents[2])}; "
                             "smoke: learning_curve_smoke.json here).")
    parser.add_argument("--runs_dir", default="outputs/learning_curve",
                        help="Folder of the unfinished runs' states (a finished run's is deleted).")
    parser.add_argument("--docs", default=None, help=f"Markdown page for the section (default {DOCS_PAGE}).")
    parser.add_argument("--plot", default=None, help=f"PNG to write (default docs/images/{PLOT}).")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--command", default="", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> str | None:
    args = build_parser().parse_args(argv)
    args.results = args.results or ("learning_curve_smoke.json" if args.smoke else str(RESULTS))
    if args.device.startswith("cuda") and not args.worker:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: no CUDA device is visible.")
    if args.worker:
        worker(args)
        return None
    if not args.render:
        seeds = args.seeds if args.seeds is not None else ([0] if args.smoke else [0, 1])
        command = command_line("learning_curve", *(["--smoke"] if args.smoke else []),
                               *(["--device", args.device] if args.device != "cpu" else []),
                               *(["--max_steps", str(args.max_steps)] if args.max_steps else []),
                               *(["--eval_every", str(args.eval_every)] if args.eval_every else []))
        store = ResultsStore(args.results, run_key)
        runs = [(m, s) for s in seeds for m in args.methods]
        before = common.load_average()
        for number, (method, seed) in enumerate(runs, 1):
            stored = store.find((method, seed))
            if stored and stored["done"]:
                print(f"[{number}/{len(runs)}] {method} seed {seed}: done ({len(stored['points'])} points), skipped")
                continue
            print(f"[{number}/{len(runs)}] {method} seed {seed}: training", flush=True)
            launch(method, seed, args, command)
            record = store.find((method, seed))
            store.put({**record, "machine": common.machine_info(args.threads, args.device)})
        print(f"load average {before} before, {common.load_average()} after")
    return render(args)


if __name__ == "__main__":
    main()
