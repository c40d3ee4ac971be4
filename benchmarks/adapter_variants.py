"""Choices for the embedded default, decided on the synthetic **val** split: adapter variants, steps and learning
rates, each one run of `accuracy_synthetic.train_and_evaluate` (the benchmark's protocol) scored on val only.

A variant is a run of `accuracy_synthetic` (``s4eca``, ``head``, ...), optionally a change to the adapter's code that
is tried here before it earns a place in the package (``patch``), and protocol overrides (steps, learning rate).
Results accumulate in ``benchmarks/results/adapter_variants.json`` (one entry per variant and seed, with the command
that made it), and the table in the ``adapter-variants`` section of docs/benchmarks.md is rendered from all of them.

    python benchmarks/adapter_variants.py --variants s4eca head --seeds 0
    python benchmarks/adapter_variants.py --variants attention_pooled_proxies --seeds 0 1
    python benchmarks/adapter_variants.py --render     # the table from the stored results only
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_synthetic import PROTOCOL, mean_std  # noqa: E402
from common import DOCS_PAGE, load_average, markdown_table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "adapter_variants.json"
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
        "about": "diagnostic: S4ECA, learning rate 2e-3, the head reads no sentence (language only through the "
                 "vision adapters)"},
    "gate_on_block_features_lr_2e-3": {
        "run": "s4eca", "patch": "gate_on_block_features", "protocol": {"learning_rate": 2e-3},
        "about": "S4ECA, learning rate 2e-3, the spatial selection also scales the block's own features "
                 "(`features * tanh(a * best cosine + c)` added, zero-initialised)"},
}


def attention_pooled_proxies() -> None:
    """Scale selection weights the proxies by their match with a query made from the block's pooled features."""
    import torch
    from torch import nn

    from s4eca_peft.tuner import scale_selection

    cls = scale_selection.LanguageGuidedScaleSelection
    original_init = cls.__init__

    def __init__(self, channels: int, num_branches: int) -> None:
        original_init(self, channels, num_branches)
        self.pool_query = nn.Linear(channels, channels)
        nn.init.zeros_(self.pool_query.weight)
        nn.init.zeros_(self.pool_query.bias)

    def forward(self, branches, proxies):
        batch, channels = proxies.shape[0], proxies.shape[-1]
        query = self.pool_query(branches[0].mean(dim=(2, 3)))  # (batch, r)
        attention = torch.einsum("bqr,br->bq", proxies, query) / channels**0.5
        pooled = torch.einsum("bq,bqr->br", attention.softmax(dim=1), proxies)
        weights = self.to_logits(pooled).view(batch, self.num_branches, channels).softmax(dim=1)
        return scale_selection.mix_branches(branches, weights), weights

    cls.__init__, cls.forward = __init__, forward


def gate_on_block_features() -> None:
    """Spatial selection also acts on the block's own features: the update adds ``features * tanh(a * best + c)``
    (``a``, ``c`` zero-initialised, so the model starts as the base), where ``best`` is the pixel's best proxy
    cosine. Regions can then be suppressed or amplified in what the next frozen block and the head see, not only in
    the adapter's branch."""
    import torch
    from torch import nn

    from s4eca_peft.tuner import spatial_selection, vision_adapter

    selection = spatial_selection.LanguageGuidedSpatialSelection
    selection_init, selection_forward = selection.__init__, selection.forward

    def init_selection(self, channels: int) -> None:
        selection_init(self, channels)
        self.feature_scale = nn.Parameter(torch.zeros(()))
        self.feature_shift = nn.Parameter(torch.zeros(()))

    def forward_selection(self, features, proxies):
        gated, gate = selection_forward(self, features, proxies)
        best = (torch.logit(gate.clamp(1e-6, 1 - 1e-6)) - self.bias) / self.temperature  # the best cosine
        self.last_feature_gate = torch.tanh(self.feature_scale * best + self.feature_shift)  # (batch, H, W, 1)
        return gated, gate

    adapter = vision_adapter.S4ECAVisionAdapter
    adapter_forward = adapter.forward

    def forward_adapter(self, features, proxies):
        update, maps = adapter_forward(self, features, proxies)
        if self.spatial_selection is not None:
            update = update + features * self.spatial_selection.last_feature_gate
        return update, maps

    selection.__init__, selection.forward = init_selection, forward_selection
    adapter.forward = forward_adapter


def gate_from_mean_proxy() -> None:
    """Spatial selection compares each pixel with the proxies' mean (one expression vector, as scale selection
    reads) instead of taking its best match over the proxies, which some proxy always gives."""
    from s4eca_peft.tuner import spatial_selection

    selection = spatial_selection.LanguageGuidedSpatialSelection
    original = selection.forward

    def forward(self, features, proxies):
        return original(self, features, proxies.mean(dim=1, keepdim=True))

    selection.forward = forward


def head_without_sentence() -> None:
    """A diagnostic, not a candidate: the head reads a zero sentence, so the expression can reach the mask only
    through the vision adapters (their language use is then all the language the model uses)."""
    import torch

    from s4eca_peft.modeling.head import SegmentationHead

    original = SegmentationHead.forward

    def forward(self, features, sentence):
        return original(self, features, torch.zeros_like(sentence))

    SegmentationHead.forward = forward


PATCHES = {"attention_pooled_proxies": attention_pooled_proxies, "gate_on_block_features": gate_on_block_features,
           "gate_from_mean_proxy": gate_from_mean_proxy, "head_without_sentence": head_without_sentence}


def run_variant(name: str, seed: int, vision_model: str | None) -> dict[str, Any]:
    """One variant at one seed, in its own process (patches stay there)."""
    variant = VARIANTS[name]
    if "patch" in variant:
        PATCHES[variant["patch"]]()
    from accuracy_synthetic import train_and_evaluate

    protocol = {**PROTOCOL, "image_size": 128, "batch_size": 16, "num_eval_samples": 256, "threads": 1,
                "steps": STEPS, "splits": ("val",), "seed": seed, "vision_model": vision_model, "language_use": True,
                **variant.get("protocol", {})}
    result = train_and_evaluate(variant["run"], protocol)
    return {"variant": name, "seed": seed, "steps": protocol["steps"], "learning_rate": protocol["learning_rate"],
            "val": result["val"], "val_mismatched_proxies": result.get("val_mismatched_proxies"),
            "trainable": result["trainable"], "train_s": result["train_s"],
            "final_loss": result["final_loss"], "vision_model": vision_model or "embedded"}


def render(results: list[dict[str, Any]]) -> str:
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    for name, runs in by_variant.items():
        scores = [mean_std([100 * r["val"][metric] for r in runs]) for metric in ("mIoU", "oIoU")]
        shown = [f"{mean:.2f} ± {std:.2f}" if len(runs) > 1 else f"{mean:.2f}" for mean, std in scores]
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
        "mIoU minus val mIoU with each image's vision adapters given the proxies of another image's expression (the "
        "head still reads the image's own sentence), `accuracy_synthetic.mismatch_proxies`; 0 means the vision "
        "adapters ignore the expression, `-` that it was not measured.",
        "",
        markdown_table(header, rows),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=[])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--vision_model", default=None, help="Another frozen backbone folder (default: the shipped one).")
    parser.add_argument("--jobs", type=int, default=2, help="Parallel processes of one torch thread.")
    parser.add_argument("--results", default=str(RESULTS), help="JSON file the results accumulate in.")
    parser.add_argument("--docs", default=str(DOCS_PAGE), help="Markdown page for the section ('' for none).")
    parser.add_argument("--render", action="store_true", help="Only render the stored results.")
    args = parser.parse_args(argv)
    path = Path(args.results)
    stored: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    if not args.render:
        given = list(argv if argv is not None else sys.argv[1:])
        for flag in ("--docs", "--results"):  # where results go does not change a figure
            if flag in given:
                del given[given.index(flag):given.index(flag) + 2]
        command = "python benchmarks/adapter_variants.py " + shlex.join(given)
        started, before = time.time(), load_average()
        tasks = [(name, seed) for name in args.variants for seed in args.seeds]
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_variant, name, seed, args.vision_model) for name, seed in tasks]
            for future in futures:
                result = {**future.result(), "command": command}
                print(f"{result['variant']} seed {result['seed']}: val mIoU {100 * result['val']['mIoU']:.2f}, "
                      f"oIoU {100 * result['val']['oIoU']:.2f} ({result['train_s']:.0f} s)", flush=True)
                stored = json.loads(path.read_text()) if path.exists() else []  # another run may have added some
                stored = [r for r in stored if (r["variant"], r["seed"]) != (result["variant"], result["seed"])]
                stored.append(result)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
                tmp.write_text(json.dumps(stored, indent=1))
                os.replace(tmp, path)
        print(f"{time.time() - started:.0f} s, load average {before} before, {load_average()} after")
    if args.docs and stored:
        write_section(args.docs, "adapter-variants", render(stored))
    return stored


if __name__ == "__main__":
    main()
