"""Choices for the embedded default, decided on the synthetic **val** split: adapter variants, steps and learning
rates, each one run of `synthetic_runs.train_and_evaluate` (the accuracy benchmark's protocol) scored on val only.

A variant is a run of `accuracy_synthetic` (``s4eca``, ``head``, ...) with package options and protocol overrides
(steps, learning rate, `S4ECAConfig` fields). Variants marked ``patch`` changed the adapters' code; none was kept as
an option, so their code is gone and their stored rows stay in the table.
Results accumulate in ``benchmarks/results/adapter_variants.json`` (one entry per variant and seed, with the command
that made it; a stored variant and seed is not run again), and the table in the ``adapter-variants`` section of
docs/benchmarks.md is rendered from all of them.

    python -m benchmarks.adapter_variants --variants s4eca_lr_2e-3 head_lr_2e-3 --seeds 0
    python -m benchmarks.adapter_variants --render     # the table from the stored results only
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from benchmarks.common import DOCS_PAGE, load_average, markdown_table, write_section
from benchmarks.store import RESULTS_DIR, ResultsStore
from benchmarks.synthetic_runs import PROTOCOL, comparisons, format_score, run_all_named

RESULTS = RESULTS_DIR / "adapter_variants.json"
STEPS = 192
"""Steps of batch 16 of every variant unless it says otherwise: the default run's 3 epochs of 1,024 scenes."""
VARIANTS: dict[str, dict[str, Any]] = {
    "s4eca_lr_1e-3": {"run": "s4eca", "protocol": {"learning_rate": 1e-3}, "about": "S4ECA, learning rate 1e-3"},
    "head_lr_1e-3": {"run": "head", "protocol": {"learning_rate": 1e-3}, "about": "head only, learning rate 1e-3"},
    "attention_pooled_proxies_lr_1e-3": {
        "run": "s4eca", "patch": "attention_pooled_proxies", "protocol": {"learning_rate": 1e-3},
        "about": "S4ECA, learning rate 1e-3, scale selection reads an attention pooling of the proxies (query from "
                 "the block's pooled features, zero-initialised so that it starts as their mean) instead of their mean"},
    "s4eca_lr_2e-3": {"run": "s4eca", "protocol": {"learning_rate": 2e-3}, "about": "S4ECA, learning rate 2e-3"},
    "head_lr_2e-3": {"run": "head", "protocol": {"learning_rate": 2e-3}, "about": "head only, learning rate 2e-3"},
    "s4eca_lr_4e-3": {"run": "s4eca", "protocol": {"learning_rate": 4e-3}, "about": "S4ECA, learning rate 4e-3"},
    "head_lr_4e-3": {"run": "head", "protocol": {"learning_rate": 4e-3}, "about": "head only, learning rate 4e-3"},
    "s4eca_no_feedback_lr_2e-3": {"run": "s4eca_no_feedback", "protocol": {"learning_rate": 2e-3},
                                  "about": "S4ECA, `text_feedback=False` (the paper's text adapter), learning rate 2e-3"},
    "s4eca_lr_2e-3_steps_384": {"run": "s4eca", "protocol": {"learning_rate": 2e-3, "steps": 384},
                                "about": "S4ECA, learning rate 2e-3, 384 steps"},
    "head_lr_2e-3_steps_384": {"run": "head", "protocol": {"learning_rate": 2e-3, "steps": 384},
                               "about": "head only, learning rate 2e-3, 384 steps"},
    "gate_from_mean_proxy_lr_2e-3": {
        "run": "s4eca", "patch": "gate_from_mean_proxy", "protocol": {"learning_rate": 2e-3},
        "about": "S4ECA, learning rate 2e-3, the spatial gate compares each pixel with the proxies' mean instead of "
                 "its best proxy"},
    "head_without_sentence_lr_2e-3": {
        "run": "s4eca", "patch": "head_without_sentence", "protocol": {"learning_rate": 2e-3},
        "about": "diagnostic: S4ECA, learning rate 2e-3, the head is given a zero sentence (language only through "
                 "the vision adapters; the FiLM and kernel biases stay, as learned constants)"},
    "gate_on_block_features_lr_2e-3": {
        "run": "s4eca", "patch": "gate_on_block_features", "protocol": {"learning_rate": 2e-3},
        "about": "S4ECA, learning rate 2e-3, the spatial selection also scales the block's own features "
                 "(`features * tanh(a * best cosine + c)` added, zero-initialised)"},
}
SENTENCE_FREE = {"learning_rate": 2e-3, "head_reads_sentence": False}
"""Protocol of the rows where the head reads no sentence (`--no_head_reads_sentence`): the expression reaches the
mask only through the vision adapters, so what each part of them contributes to the language shows."""
VARIANTS.update({
    f"{run}_sentence_free_head": {"run": run, "protocol": SENTENCE_FREE,
                                  "about": f"{about}, learning rate 2e-3, head reads no sentence"}
    for run, about in (("s4eca", "S4ECA"), ("s4eca_no_scale", "no scale selection"),
                       ("s4eca_no_spatial", "no spatial selection"), ("s4eca_no_queries", "no text queries"))
})
TRIED_PATCHES = {
    "gate_on_block_features": "spatial selection also scaling the block's features",
    "gate_from_mean_proxy": "spatial gate from the proxies' mean",
    "residual_spatial_gate": "spatial selection as a residual gate `1 + tanh(a * best cosine + c)` (zero-initialised)",
    "separate_spatial_proxy_projection": "spatial selection with a proxy projection of its own",
    "position_aware_spatial_selection": "spatial selection also reading each pixel's (x, y)",
    "proxies_from_words_only": "proxies are what the queries read, without the queries added",
    "small_query_init": "learnable queries initialised at std 0.02 instead of 1",
    "proxies_around_the_sentence": "proxies are the sentence feature plus what each query read (zero-initialised)",
}
"""Changes to the adapters tried with the head that reads no sentence (and the text-side ones with the default head
too): the patch's name and what it changes."""


def patched_variant(patch: str, protocol: dict[str, Any]) -> dict[str, Any]:
    where = ", head reads no sentence" if protocol.get("head_reads_sentence") is False else ""
    return {"run": "s4eca", "patch": patch, "protocol": protocol,
            "about": f"S4ECA, learning rate 2e-3, {TRIED_PATCHES[patch]}{where}"}


VARIANTS.update({f"{patch}_sentence_free_head": patched_variant(patch, SENTENCE_FREE) for patch in TRIED_PATCHES})
VARIANTS.update({f"{patch}_lr_2e-3": patched_variant(patch, {"learning_rate": 2e-3})
                 for patch in ("proxies_from_words_only", "small_query_init", "proxies_around_the_sentence",
                               "separate_spatial_proxy_projection")})
VARIANTS.update({
    "s4eca_lr_4e-3_sentence_free_head": {"run": "s4eca", "protocol": {**SENTENCE_FREE, "learning_rate": 4e-3},
                                         "about": "S4ECA, learning rate 4e-3, head reads no sentence"},
    "one_query_sentence_free_head": {
        "run": "s4eca", "protocol": {**SENTENCE_FREE, "s4eca_kwargs": {"num_queries": 1}},
        "about": "S4ECA with one learnable query (one proxy), learning rate 2e-3, head reads no sentence"},
})


RUNNABLE = [name for name, variant in VARIANTS.items() if "patch" not in variant]
"""Variants made of package options and protocol overrides. A ``patch`` variant changed the adapters' code; it was
not kept as an option, so its code is gone and only its stored rows remain."""


def variant_protocol(name: str, seed: int, vision_model: str | None) -> dict[str, Any]:
    """The protocol of one variant at one seed: the accuracy protocol on val, then the variant's overrides."""
    return {**PROTOCOL, "image_size": 128, "batch_size": 16, "num_eval_samples": 256, "threads": 1, "steps": STEPS,
            "splits": ["val"], "seed": seed, "vision_model": vision_model, "language_use": True,
            **VARIANTS[name].get("protocol", {})}


def variant_record(name: str, protocol: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """What the results file keeps of one run."""
    return {"variant": name, "seed": protocol["seed"], "steps": protocol["steps"],
            "learning_rate": protocol["learning_rate"], "val": result["val"],
            "val_mismatched_proxies": result.get("val_mismatched_proxies"), "trainable": result["trainable"],
            "train_s": result["train_s"], "final_loss": result["final_loss"],
            "vision_model": protocol["vision_model"] or "embedded"}


def render(results: list[dict[str, Any]]) -> str:
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    for name, runs in by_variant.items():
        shown = [format_score(runs, "val", metric) for metric in ("mIoU", "oIoU")]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        commands = "; ".join(f"`{command}`" for command in dict.fromkeys(r["command"] for r in runs))
        drops = [100 * (r["val"]["mIoU"] - r["val_mismatched_proxies"]["mIoU"]) for r in runs
                 if r.get("val_mismatched_proxies")]
        language_use = f"{sum(drops) / len(drops):+.2f}" if drops else "-"
        rows.append([VARIANTS[name]["about"], f"{runs[0]['trainable']:,}", runs[0]["steps"],
                     f"{runs[0]['learning_rate']:g}", seeds, *shown, language_use, commands])
    header = ["variant", "trainable", "steps", "lr", "seeds", "val mIoU", "val oIoU", "language use", "command"]
    return "\n".join([
        "## Choices made on val",
        "",
        "Each row: `accuracy_synthetic.py`'s protocol (128 px, batch 16, AdamW with 5 % warm-up then cosine, final "
        "weights) on the shipped pretrained Swin and MiniLM, scored on the 256 fixed synthetic **val** scenes only; "
        "mean ± standard deviation when several seeds are listed. Test is not looked at here. *Language use*: val "
        "mIoU minus val mIoU with each image's vision adapters given the proxies of another image's expression (a "
        "head that reads the sentence still reads the image's own), `s4eca_peft.tuner.mismatch_proxies`; 0 means "
        "the vision adapters ignore the expression, `-` that it was not measured.",
        "",
        markdown_table(header, rows),
        *sentence_free_comparisons(by_variant),
    ])


def sentence_free_comparisons(by_variant: dict[str, list[dict[str, Any]]]) -> list[str]:
    """With a head that reads no sentence, S4ECA against its ablations on val mIoU (each row's mean and the seed
    spread, as in the accuracy table)."""
    runs = {VARIANTS[name]["run"]: runs for name, runs in by_variant.items()
            if name.endswith("_sentence_free_head") and "patch" not in VARIANTS[name]
            and VARIANTS[name]["protocol"] == SENTENCE_FREE}
    if "s4eca" not in runs or len(runs) < 2:
        return []
    return [
        "",
        "### With a head that reads no sentence",
        "",
        "`--no_head_reads_sentence`: the expression reaches the mask only through the vision adapters, so an ablation "
        "that removes a part they carry the language with scores lower. S4ECA against each ablation, val mIoU (the "
        "verdict compares the difference with the two rows' standard deviations added):",
        "",
        *(f"- {line}" for line in comparisons(runs, "val")),
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", choices=RUNNABLE, default=[],
                        help="Variants to train (those that changed the adapters' code are stored results only).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--vision_model", default=None, help="Another frozen backbone folder (default: the shipped one).")
    parser.add_argument("--jobs", type=int, default=2, help="Parallel processes of one torch thread.")
    parser.add_argument("--results", default=str(RESULTS), help="JSON file the results accumulate in.")
    parser.add_argument("--docs", default=str(DOCS_PAGE), help="Markdown page for the section ('' for none).")
    parser.add_argument("--render", action="store_true", help="Only render the stored results.")
    args = parser.parse_args(argv)
    store = ResultsStore(args.results, key=lambda r: (r["variant"], r["seed"]))
    if not args.render:
        given = list(argv if argv is not None else sys.argv[1:])
        for flag in ("--docs", "--results"):  # where results go does not change a figure
            if flag in given:
                del given[given.index(flag):given.index(flag) + 2]
        command = "python -m benchmarks.adapter_variants " + shlex.join(given)
        started, before = time.time(), load_average()
        tasks = {f"{name} seed {seed}": (name, variant_protocol(name, seed, args.vision_model))
                 for name in args.variants for seed in args.seeds if store.find((name, seed)) is None}

        def keep(task: str, result: dict[str, Any]) -> None:  # stored as each run ends
            name, protocol = tasks[task]
            store.put({**variant_record(name, protocol, result), "command": command})

        run_all_named({task: (VARIANTS[name]["run"], protocol) for task, (name, protocol) in tasks.items()},
                      args.jobs, on_result=keep)
        print(f"{time.time() - started:.0f} s, load average {before} before, {load_average()} after")
    stored = store.records()
    if args.docs and stored:
        write_section(args.docs, "adapter-variants", render(stored))
    return stored


if __name__ == "__main__":
    main()
