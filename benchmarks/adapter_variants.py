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

from accuracy_synthetic import PROTOCOL, comparisons, format_score  # noqa: E402
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


def add_tanh_of_best_cosine(selection: type) -> Any:
    """Give the spatial selection class two zero-initialised scalars ``a`` and ``c``; returns a function of
    ``(self, features, proxies)`` that runs its original forward and gives ``(gated, gate, tanh(a * best + c))``,
    where ``best`` is each pixel's best proxy cosine, read back from the sigmoid gate."""
    import torch
    from torch import nn

    selection_init, selection_forward = selection.__init__, selection.forward

    def init_selection(self, channels: int) -> None:
        selection_init(self, channels)
        self.tanh_scale = nn.Parameter(torch.zeros(()))
        self.tanh_shift = nn.Parameter(torch.zeros(()))

    def forward(self, features, proxies):
        gated, gate = selection_forward(self, features, proxies)
        best = (torch.logit(gate.clamp(1e-6, 1 - 1e-6)) - self.bias) / self.temperature
        return gated, gate, torch.tanh(self.tanh_scale * best + self.tanh_shift)

    selection.__init__ = init_selection
    return forward


def gate_on_block_features() -> None:
    """Spatial selection also acts on the block's own features: the update adds ``features * tanh(a * best + c)``
    (``a``, ``c`` zero-initialised, so the model starts as the base), where ``best`` is the pixel's best proxy
    cosine. Regions can then be suppressed or amplified in what the next frozen block and the head see, not only in
    the adapter's branch."""
    from s4eca_peft.tuner import spatial_selection, vision_adapter

    selection = spatial_selection.LanguageGuidedSpatialSelection
    tanh_of_best = add_tanh_of_best_cosine(selection)

    def forward_selection(self, features, proxies):
        gated, gate, self.last_feature_gate = tanh_of_best(self, features, proxies)  # (batch, H, W, 1)
        return gated, gate

    adapter = vision_adapter.S4ECAVisionAdapter
    adapter_forward = adapter.forward

    def forward_adapter(self, features, proxies):
        update, maps = adapter_forward(self, features, proxies)
        if self.spatial_selection is not None:
            update = update + features * self.spatial_selection.last_feature_gate
        return update, maps

    selection.forward = forward_selection
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


def position_aware_spatial_selection() -> None:
    """Spatial selection sees where each pixel is: its normalised (x, y) coordinates, through a zero-initialised
    linear map, are added to the pixel's projection before the proxy match, so a proxy can select "the left" or "the
    top" as well as a look. The frozen Swin's features carry no absolute position."""
    import torch
    from torch import nn

    from s4eca_peft.modeling.head import coordinate_channels
    from s4eca_peft.tuner import spatial_selection

    selection = spatial_selection.LanguageGuidedSpatialSelection
    selection_init = selection.__init__

    def init_selection(self, channels: int) -> None:
        selection_init(self, channels)
        self.position_proj = nn.Linear(2, channels, bias=False)
        nn.init.zeros_(self.position_proj.weight)

    def forward_selection(self, features, proxies):
        batch, height, width, channels = features.shape
        coordinates = coordinate_channels(batch, height, width, features).permute(0, 2, 3, 1)  # (batch, H, W, 2)
        pixels = (self.pixel_proj(features) + self.position_proj(coordinates)).reshape(batch, height * width, channels)
        keys = proxies / proxies.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        best = torch.bmm(pixels, keys.transpose(1, 2)).amax(dim=-1, keepdim=True)
        best = best / pixels.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        gate = torch.sigmoid(self.temperature * best + self.bias).view(batch, height, width, 1)
        return features * gate, gate

    selection.__init__, selection.forward = init_selection, forward_selection


def residual_spatial_gate() -> None:
    """Spatial selection as a residual gate, ``features * (1 + tanh(a * best + c))`` with ``a`` and ``c``
    zero-initialised: it starts as the identity instead of a sigmoid gate that scales every pixel by a random factor
    around one half, and can amplify the selected pixels as well as suppress the others."""
    from s4eca_peft.tuner import spatial_selection

    selection = spatial_selection.LanguageGuidedSpatialSelection
    tanh_of_best = add_tanh_of_best_cosine(selection)

    def forward_selection(self, features, proxies):
        gate = 1 + tanh_of_best(self, features, proxies)[2]
        return features * gate, gate

    selection.forward = forward_selection


def separate_spatial_proxy_projection() -> None:
    """Spatial selection reads the proxies through a projection of its own instead of the one it shares with scale
    selection, which reads their mean."""
    from torch import nn

    from s4eca_peft.tuner import spatial_selection, vision_adapter

    adapter = vision_adapter.S4ECAVisionAdapter
    adapter_init = adapter.__init__
    selection = spatial_selection.LanguageGuidedSpatialSelection
    selection_forward = selection.forward

    def init_adapter(self, channels, text_dim, bottleneck_size, *args, **kwargs) -> None:
        adapter_init(self, channels, text_dim, bottleneck_size, *args, **kwargs)
        if self.spatial_selection is not None:
            self.spatial_selection.proxy_proj = nn.Linear(text_dim, bottleneck_size)

    adapter_forward = adapter.forward
    raw = {}  # the adapter's proxies before its shared projection, for the selection's own

    def forward_selection(self, features, proxies):
        return selection_forward(self, features, self.proxy_proj(raw["proxies"]))

    def forward_adapter(self, features, proxies):
        raw["proxies"] = proxies
        return adapter_forward(self, features, proxies)

    adapter.__init__, adapter.forward = init_adapter, forward_adapter
    selection.forward = forward_selection


def text_adapter_with_proxies(make_proxies: Any) -> None:
    """Replace the text adapter's forward by one whose proxies are ``make_proxies(adapter, words, key_padding_mask,
    queries, attended)``; the attention and the feedback are the package's."""
    from torch.nn import functional as F

    from s4eca_peft.tuner import text_adapter

    def forward(self, words, key_padding_mask=None, previous=None):
        batch = words.shape[0]
        queries = self.queries.unsqueeze(0).expand(batch, -1, -1)
        if previous is not None:
            queries = queries + previous
        q, k, v = (self._heads(projection(x)) for projection, x in
                   ((self.q_proj, queries), (self.k_proj, words), (self.v_proj, words)))
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = (key_padding_mask | ~key_padding_mask.any(-1, keepdim=True))[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        attended = attended.transpose(1, 2).reshape(batch, queries.shape[1], -1)
        proxies = make_proxies(self, words, key_padding_mask, queries, attended)
        update = self.feedback(attended.mean(1)).unsqueeze(1) if self.feedback is not None else None
        return proxies, update

    text_adapter.TextProxyAdapter.forward = forward


def proxies_from_words_only() -> None:
    """The proxies are what the queries read, ``norm(out_proj(attended))``, instead of ``norm(queries +
    out_proj(attended))``: the unit-scale learnable queries (norm about sqrt(text_dim)) otherwise outweigh what they
    read from the words, so that every expression starts with nearly the same proxies."""
    text_adapter_with_proxies(lambda self, words, mask, queries, attended: self.norm(self.out_proj(attended)))


def proxies_around_the_sentence() -> None:
    """Each proxy is the expression's sentence feature (the masked mean of the block's words) plus what its query
    read, ``sentence + out_proj(attended)`` with ``out_proj`` zero-initialised: the proxies start as the pretrained
    sentence embedding (the `no text queries` ablation's single proxy) and the queries learn how to depart from it."""
    from torch import nn

    from s4eca_peft.modeling.modeling import masked_mean
    from s4eca_peft.tuner import text_adapter

    adapter = text_adapter.TextProxyAdapter
    original_init = adapter.__init__

    def __init__(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    adapter.__init__ = __init__
    text_adapter_with_proxies(lambda self, words, mask, queries, attended:
                              masked_mean(words, mask).unsqueeze(1) + self.out_proj(attended))


def small_query_init() -> None:
    """The learnable queries start at standard deviation 0.02 (as BERT's embeddings) instead of 1, so that the
    proxies ``norm(queries + out_proj(attended))`` start as what the queries read from the words rather than as the
    queries themselves."""
    from s4eca_peft.tuner import text_adapter

    adapter = text_adapter.TextProxyAdapter
    original = adapter.__init__

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self.queries.data.mul_(0.02)

    adapter.__init__ = __init__


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
           "gate_from_mean_proxy": gate_from_mean_proxy, "head_without_sentence": head_without_sentence,
           "position_aware_spatial_selection": position_aware_spatial_selection,
           "residual_spatial_gate": residual_spatial_gate,
           "separate_spatial_proxy_projection": separate_spatial_proxy_projection,
           "proxies_from_words_only": proxies_from_words_only, "small_query_init": small_query_init,
           "proxies_around_the_sentence": proxies_around_the_sentence}


def run_variant(name: str, seed: int, vision_model: str | None) -> dict[str, Any]:
    """One variant at one seed, in a process of its own that ends with it (patches stay there)."""
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
        # one fresh process per run: a variant's patch must never reach the next run
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 max_tasks_per_child=1) as pool:
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
